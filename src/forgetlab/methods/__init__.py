"""Continual-learning strategies. One file, one class, up to three hooks:

    before_task(model, task, ctx)       prepare (e.g. snapshot a reference, add an adapter)
    loss(model, batch, ctx) -> Tensor   the training loss for one batch (required)
    after_task(model, task, ctx)        consolidate (e.g. compute a Fisher); may return a dict worth saving

Hooks return values or change the model; they never touch the loop's optimizer or state. Two plain class
attributes tell the recipe how to run a strategy:

    stages            "sequential" (one stage per task, the default), "joint" (one stage on all tasks at once)
                      or "none" (no training: the base model as a reference)
    same_parameters   True when every stage trains the same adapter parameters, so the second-order forgetting
                      estimate (½ΔθᵀHΔθ in those coordinates) is meaningful
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import StrategyConfig, TrainConfig
from ..errors import UserError
from .base import Base
from .ewc import EWC
from .gated import Gated
from .joint import Joint
from .kl import KL, KLBase
from .merge import Merge
from .naive import Naive
from .olora import OLoRA
from .replay import Replay

STRATEGIES: dict[str, type] = {"naive": Naive, "replay": Replay, "kl": KL, "kl-base": KLBase, "ewc": EWC, "olora": OLoRA,
                            "merge": Merge, "gated": Gated, "joint": Joint, "base": Base}


SECTIONS = {"kl-base": "kl"}  # methods that read another method's `strategy.<section>` settings


def split_variant(entry: str) -> tuple[str, list[str]]:
    """A strategy with settings of its own, as `compare --strategies` takes it: 'ewc:lam=1e6:samples=64' ->
    ('ewc', ['strategy.ewc.lam=1e6', 'strategy.ewc.samples=64']); a plain name has no settings."""
    name, *keys = entry.split(":")
    return name, [f"strategy.{SECTIONS.get(name, name)}.{k}" for k in keys]


@dataclass
class MethodContext:
    """What a hook may read: the stage's index, the tasks seen so far, the tokenizer and the training settings."""

    task_index: int
    tasks: list = field(default_factory=list)
    tokenizer: Any = None
    train: TrainConfig = field(default_factory=TrainConfig)


def build_method(name: str, settings: StrategyConfig | None = None):
    """Instantiate a method by registry name with its settings; an unknown name lists the valid ones."""
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy '{name}'; valid strategies: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](settings or StrategyConfig())


def call_hook(method, hook: str, model, task, ctx: MethodContext):
    fn = getattr(method, hook, None)
    return fn(model, task, ctx) if fn else None


def describe() -> list[tuple[str, str]]:
    """(name, first docstring line) per registered method, for `forgetlab methods`."""
    return [(name, (cls.__doc__ or "").strip().splitlines()[0]) for name, cls in STRATEGIES.items()]
