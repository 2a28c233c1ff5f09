"""Tidying generated answers without ever cutting a URL, an e-mail address, a number or a code span.

A small model that runs out of tokens stops mid-sentence, and sometimes starts a new "User:" turn on its own.
`tidy` drops such a made-up turn and, when the answer was cut by the token limit, the unfinished last sentence.
A sentence ends at . ! or ? followed by a space or the end, but never inside a protected span: the old bot cut
"https://cs.msu.edu/apply" at its first dot.
"""

from __future__ import annotations

import re

_PROTECTED = re.compile(
    r"```.*?(?:```|\Z)"                         # fenced code, closed or not
    r"|`[^`\n]*`"                               # inline code
    r"|\b(?:https?://|ftp://|www\.)[^\s<>\"]+"  # URLs
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"            # e-mail addresses
    r"|\b\d+(?:[.,:]\d+)+\b"                    # 3.14, 1,000, 10:30
    r"|\b(?:e\.g|i\.e|etc|Dr|Prof|Mr|Mrs|Ms|St|No)\.",  # abbreviations
    re.S,
)
_TRAILING = ".,;:!?)]}'\""
_TURN = re.compile(r"\n\s*(?:(?:user|assistant|system|question|q)\s*:|(?:user|assistant|system)\s*(?:\n|\Z))", re.I)
_SENTENCE_END = re.compile(r"[.!?](?=\s|\Z)")


def protected_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every URL, e-mail, number and code span; a URL's trailing punctuation is not part of it."""
    spans = []
    for m in _PROTECTED.finditer(text):
        start, end = m.span()
        if m.group().startswith(("http", "ftp", "www")):
            while end > start and text[end - 1] in _TRAILING:
                end -= 1
        spans.append((start, end))
    return spans


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(s <= pos < e for s, e in spans)


def sentence_ends(text: str) -> list[int]:
    """Offsets just past each sentence-ending mark that is not inside a protected span."""
    spans = protected_spans(text)
    return [m.end() for m in _SENTENCE_END.finditer(text) if not _inside(m.start(), spans)]


def tidy(text: str, truncated: bool = False) -> str:
    """The answer without a made-up next turn and, if `truncated`, without its unfinished last sentence."""
    spans = protected_spans(text)
    for m in _TURN.finditer(text):
        if not _inside(m.start(), spans):
            text = text[: m.start()]
            break
    text = text.strip()
    if truncated and text and text[-1] not in ".!?" and text.count("```") % 2 == 0:
        ends = sentence_ends(text)
        if ends:
            text = text[: ends[-1]]
    return text.strip()
