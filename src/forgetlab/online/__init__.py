"""Online learning from every chat turn: fact detection (detector.py), a fact memory (memory.py), per-turn LoRA
updates kept near the base (update.py, learner.py). Import the modules themselves: this package imports nothing, so
reading the online settings never loads torch."""
