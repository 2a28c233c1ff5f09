"""Continual sessions for a domain assistant: each new Q&A file trains a new session on top of the earlier ones.

An assistant is a directory (`<home>/<name>/`) holding one folder per finished session. `store` is the layout,
`data` validates and splits the files, `settings` chooses training settings from the data size, `compose` builds
the model a session chain describes, `holder` keeps the served model and generates, `answers` tidies answers.
"""
