"""Continual-learning strategies. One file, one class, up to three hooks:

    before_task(model, task, ctx)       prepare (e.g. snapshot a reference, add an adapter)
    loss(model, batch, ctx) -> Tensor   the training loss for one batch (required)
    after_task(model, task, ctx)        consolidate (e.g. compute a Fisher, merge an adapter)

Hooks return values or change the model; they never touch the loop's optimizer or state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from .naive import Naive

METHODS: dict[str, type] = {"naive": Naive}


@dataclass
class MethodContext:
    """What a hook may read: the task's index, the tasks seen so far, the tokenizer and the resolved config."""

    task_index: int
    tasks: list = field(default_factory=list)
    tokenizer: Any = None
    config: Any = None


def build_method(name: str):
    """Instantiate a method by registry name; an unknown name lists the valid ones."""
    if name not in METHODS:
        raise UserError(f"unknown method '{name}'; valid methods: {', '.join(METHODS)}")
    return METHODS[name]()


def call_hook(method, hook: str, model, task, ctx: MethodContext):
    fn = getattr(method, hook, None)
    return fn(model, task, ctx) if fn else None
