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
    """(train, held_out). Paraphrases are held out first: a record whose answer another record also gives can be
    held out and still be answerable from what was trained. Then records are drawn at random. At least one record
    is always trained on."""
    k = min(round(len(examples) * share), len(examples) - 1) if share > 0 else 0
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    by_answer: dict[str, list[int]] = {}
    for i in order:
        by_answer.setdefault(normalize(examples[i].target), []).append(i)
    paraphrases = [i for group in by_answer.values() for i in group[1:]]  # keep one of each answer in training
    rest = [i for i in order if i not in set(paraphrases)]
    held = set((paraphrases + rest)[:k])
    return [ex for i, ex in enumerate(examples) if i not in held], [ex for i, ex in enumerate(examples) if i in held]


def to_record(ex: Example) -> dict:
    """An Example as a chat record (the exact prompt, system turn included), readable by `load_examples`."""
    return {"messages": [*ex.messages, {"role": "assistant", "content": ex.target}]}


def write_jsonl_text(examples: list[Example]) -> str:
    return "".join(json.dumps(to_record(ex), ensure_ascii=False) + "\n" for ex in examples)
