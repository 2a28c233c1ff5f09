"""MMLU subjects from a local directory in the original layout, or from the hub (`cais/mmlu`) when online.

Local layout: `<dir>/{dev,val,test}/<subject>_<split>.csv`, rows `question,A,B,C,D,answer`, no header.
All available splits of the subject are pooled, then split deterministically into seen and held-out questions.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..config import DataConfig
from ..errors import UserError
from .records import LETTERS, MCQItem, Task, mcq_task

SPLITS = ("dev", "val", "test")


def read_csv(path: Path, subject: str) -> list[MCQItem]:
    """Parse one MMLU CSV; a malformed row is a UserError naming the file and line."""
    items = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    for lineno, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1):
        if len(row) != 6:
            raise UserError(f"{path} line {lineno}: expected 6 fields (question,A,B,C,D,answer), found {len(row)}; "
                            "fix or remove the row")
        answer = row[5].strip().upper()
        if answer not in LETTERS[:4]:
            raise UserError(f"{path} line {lineno}: field 'answer' is {row[5]!r}; it must be one of A, B, C, D")
        items.append(MCQItem(row[0], tuple(row[1:5]), LETTERS.index(answer), {"subject": subject}))
    return items


def _from_dir(root: Path, subject: str) -> list[MCQItem]:
    if not root.is_dir():
        raise UserError(f"MMLU directory {root} not found; pass --mmlu-dir DIR holding {{dev,val,test}}/<subject>_<split>.csv")
    files = [root / s / f"{subject}_{s}.csv" for s in SPLITS if (root / s / f"{subject}_{s}.csv").is_file()]
    if not files:
        known = sorted({p.name.rsplit("_", 1)[0] for p in root.glob("*/*_*.csv")})
        hint = f"subjects found: {', '.join(known[:12])}{' ...' if len(known) > 12 else ''}" if known else \
            "no <subject>_<split>.csv files found there"
        raise UserError(f"mmlu:{subject}: no {subject}_{{dev,val,test}}.csv under {root}; {hint}")
    return [item for f in files for item in read_csv(f, subject)]


def _from_hub(subject: str) -> list[MCQItem]:
    try:
        import datasets
    except ImportError:
        raise UserError(f"mmlu:{subject}: no --mmlu-dir given and the optional 'datasets' package is not installed; "
                        "pass --mmlu-dir DIR or `pip install forgetlab[hub]` when online") from None
    try:
        ds = datasets.load_dataset("cais/mmlu", subject)
    except Exception as e:  # offline, unknown subject, hub error: all end the same way for the user
        raise UserError(f"mmlu:{subject}: could not load cais/mmlu from the hub ({type(e).__name__}); "
                        "offline, pass --mmlu-dir DIR with the original CSV layout") from None
    return [MCQItem(r["question"], tuple(r["choices"]), int(r["answer"]), {"subject": subject})
            for split in ("dev", "validation", "test") if split in ds for r in ds[split]]


def load(subject: str, cfg: DataConfig) -> Task:
    """MMLU `subject` as a task: train on the seen questions, report seen and held-out accuracy."""
    items = _from_dir(Path(cfg.mmlu.dir).expanduser(), subject) if cfg.mmlu.dir else _from_hub(subject)
    if cfg.mmlu.max_questions:
        items = items[: cfg.mmlu.max_questions]
    if len(items) < 2:
        raise UserError(f"mmlu:{subject}: only {len(items)} question(s); a task needs at least 2")
    return mcq_task(f"mmlu:{subject}", items, cfg.holdout, cfg.seed)
