"""Plain records every task source produces: training examples and MCQ items."""

from __future__ import annotations

from dataclasses import dataclass, field

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Example:
    """One training (or QA evaluation) record: a chat prompt and the answer the model should give."""

    messages: tuple[dict, ...]
    target: str
    meta: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class MCQItem:
    """A multiple-choice question; `answer` indexes `options`."""

    question: str
    options: tuple[str, ...]
    answer: int
    meta: dict = field(default_factory=dict, compare=False)


@dataclass
class Task:
    """A named task: training examples and, per split ("seen", "held_out"), MCQ items and/or QA examples."""

    name: str
    train: list[Example]
    mcq: dict[str, list[MCQItem]] = field(default_factory=dict)
    qa: dict[str, list[Example]] = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        return list(self.mcq) if self.mcq else list(self.qa)


# A short system turn replaces the chat template's default one (about 20 tokens) on every record: training and
# evaluation both spend fewer tokens per question, and behave the same.
SYSTEM = "Answer briefly."


def user(text: str) -> tuple[dict, ...]:
    """Chat messages for a single question."""
    return ({"role": "system", "content": SYSTEM}, {"role": "user", "content": text})


def mcq_prompt(item: MCQItem) -> str:
    lines = [item.question] + [f"{LETTERS[i]}. {opt}" for i, opt in enumerate(item.options)]
    lines.append("Answer with the letter of the correct option.")
    return "\n".join(lines)


def mcq_example(item: MCQItem) -> Example:
    """The MCQ as a training record: the target starts with the letter, then repeats the answer."""
    target = f"{LETTERS[item.answer]}. {item.options[item.answer]}"
    return Example(user(mcq_prompt(item)), target, dict(item.meta, kind="mcq"))


def split_indices(n: int, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic (seen, held_out) index lists; at least one of each when n >= 2."""
    import random

    order = list(range(n))
    random.Random(seed).shuffle(order)
    k = min(max(1, round(n * holdout)), n - 1) if n >= 2 else 0
    return sorted(order[k:]), sorted(order[:k])


def mcq_task(name: str, items: list[MCQItem], holdout: float, seed: int) -> Task:
    """Split MCQ items into trained ("seen") and "held_out" ones; train on the seen ones in MCQ form."""
    seen_idx, held_idx = split_indices(len(items), holdout, seed)
    seen = [MCQItem(items[i].question, items[i].options, items[i].answer, dict(items[i].meta, split="seen"))
            for i in seen_idx]
    held = [MCQItem(items[i].question, items[i].options, items[i].answer, dict(items[i].meta, split="held_out"))
            for i in held_idx]
    return Task(name, [mcq_example(it) for it in seen], mcq={"seen": seen, "held_out": held})


def qa_task(name: str, examples: list[Example], holdout: float, seed: int) -> Task:
    """Split instruction/response records into trained ("seen") and "held_out" ones, scored by generation."""
    seen_idx, held_idx = split_indices(len(examples), holdout, seed)
    seen = [examples[i] for i in seen_idx]
    return Task(name, seen, qa={"seen": seen, "held_out": [examples[i] for i in held_idx]})
