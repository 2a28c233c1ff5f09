"""Session data: validated up front (every problem named with its record and field), split for retention checks."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from ..data.file import parse_example, read_records
from ..data.records import Example
from ..errors import UserError
from ..metrics.qa import normalize
from .rephrase import acronyms, rephrasings


def load_examples(path: str | Path) -> list[Example]:
    """Every record of a JSON array / JSONL file of instruction/response, input/output or chat `messages` records.

    All records are checked before anything trains; the error lists every bad record and field."""
    path = Path(path).expanduser()
    rows = read_records(path)
    examples, problems = [], []
    for where, record in rows:
        try:
            examples.append(parse_example(path, where, record))
        except UserError as e:
            problems.append(str(e).removeprefix(f"{path} "))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise UserError(f"{path}: {len(problems)} bad record{'s' * (len(problems) > 1)} ({shown}); "
                        "fix them and run again (formats: instruction/response, input/output or messages)")
    return examples


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()


def split_heldout(examples: list[Example], share: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held_out). Only paraphrases are held out: a record whose answer another record also gives, so the
    fact is still trained through its twin and the held-out question tests recall. At most `share` of the file;
    a file without such twins holds nothing out (no fact is ever left untrained)."""
    k = round(len(examples) * share) if share > 0 else 0
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    by_answer: dict[str, list[int]] = {}
    for i in order:
        by_answer.setdefault(normalize(examples[i].target), []).append(i)
    held = {i for group in by_answer.values() for i in group[1:]}  # keep one of each answer in training
    held = set([i for i in order if i in held][:k])
    return [ex for i, ex in enumerate(examples) if i not in held], [ex for i, ex in enumerate(examples) if i in held]


def with_question(ex: Example, question: str) -> Example:
    """The example asked with `question` in place of its last user turn."""
    last = max(i for i, m in enumerate(ex.messages) if m["role"] == "user")
    messages = tuple(dict(m, content=question) if i == last else m for i, m in enumerate(ex.messages))
    return Example(messages, ex.target, dict(ex.meta))


def question_of(ex: Example) -> str:
    return next(m["content"] for m in reversed(ex.messages) if m["role"] == "user")


def rephrased(examples: list[Example], n: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(rows, checks): every example followed by `n` rephrasings of its question (same answer), and per example one
    more rephrasing that is not trained, to check recall on (the trained question where no other phrasing exists)."""
    known = acronyms([question_of(ex) for ex in examples] + [ex.target for ex in examples])
    rows, checks = [], []
    for ex in examples:
        forms = rephrasings(question_of(ex), n + 1, seed, known)
        rows += [ex] + [with_question(ex, q) for q in forms[:n]]
        check = forms[n] if len(forms) > n else question_of(ex)
        checks.append(Example(with_question(ex, check).messages, ex.target, {"check": "rephrased" if len(forms) > n
                                                                            else "trained"}))
    return rows, checks


def to_record(ex: Example) -> dict:
    """An Example as a chat record (the exact prompt, system turn included), readable by `load_examples`."""
    return {"messages": [*ex.messages, {"role": "assistant", "content": ex.target}]}


def write_jsonl_text(examples: list[Example]) -> str:
    return "".join(json.dumps(to_record(ex), ensure_ascii=False) + "\n" for ex in examples)
