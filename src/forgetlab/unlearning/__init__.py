"""Unlearning methods. One file, one class, the same shape as `methods/`:

    rows(forget, ctx) -> list[Encoded]   what the loop trains on (default: the forget facts stated correctly)
    prepare(model, ctx)                  optional: cache what the frozen reference says, before any step
    loss(model, batch, ctx) -> Tensor    the loss for one batch of those rows (required)
    trainable(model)                     optional, full-weight mode: which parameters train (default: all)

The frozen reference (NPO's log-likelihoods, RMU's retain hidden states) is cached from the model before the first
step — never a second copy of the model. Retain terms draw their batches from `ctx.retain_batch()`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch

from ..batching import Encoded, collate, to_device
from ..config import ALIASES, TrainConfig, UnlearnConfig
from ..errors import UserError
from .fwf import FWF
from .ga import GA
from .gd import GD
from .npo import NPO
from .rmu import RMU
from .simnpo import SimNPO
from .whp import WHP

UNLEARNING: dict[str, type] = {"ga": GA, "gd": GD, "whp": WHP, "fwf": FWF, "rmu": RMU, "npo": NPO, "simnpo": SimNPO}


@dataclass
class Cycle:
    """Rows handed out a batch at a time, a reshuffled pass each time they run out (seeded)."""

    rows: list[Encoded]
    batch_size: int
    pad_id: int
    _order: list[int] = field(default_factory=list)
    _pos: int = 0
    _rng: random.Random = field(default_factory=lambda: random.Random(0))

    def next(self, device) -> dict[str, torch.Tensor] | None:
        """The next batch (on `device`); None when there are no rows."""
        if not self.rows:
            return None
        out = []
        while len(out) < min(self.batch_size, len(self.rows)):
            if self._pos >= len(self._order):
                self._order = list(range(len(self.rows)))
                self._rng.shuffle(self._order)
                self._pos = 0
            out.append(self.rows[self._order[self._pos]])
            self._pos += 1
        return to_device(collate(out, self.pad_id), device)


@dataclass
class UnlearnContext:
    """What a method may read: the tokenizer, the training settings, the retain rows (cycled by `retain_batch`) and
    caches."""

    tokenizer: Any
    train: TrainConfig
    retain: list[Encoded] = field(default_factory=list)
    cache: dict = field(default_factory=dict)
    retain_scale: float = 1.0  # the guard raises it as retain facts are lost (guard.retain_gain)
    _retain: Cycle | None = None

    def retain_batch(self, device) -> dict[str, torch.Tensor] | None:
        """The next batch of retain rows (a reshuffled pass each time they run out); None when there are none."""
        if self._retain is None:
            self._retain = Cycle(self.retain, self.train.batch_size, self.tokenizer.pad_token_id)
        return self._retain.next(device)


def canonical(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in UNLEARNING:
        raise UserError(f"unknown unlearning method '{name}'; valid methods: {', '.join(list(UNLEARNING) + list(ALIASES))}")
    return name


def build_unlearning(cfg: UnlearnConfig):
    return UNLEARNING[canonical(cfg.method.name)](cfg.method)


def describe() -> list[tuple[str, str]]:
    """(name, first docstring line) per method, for `forgetlab unlearn --list`."""
    rows = [(name, (cls.__doc__ or "").strip().splitlines()[0]) for name, cls in UNLEARNING.items()]
    return rows + [(alias, f"alias of {target}") for alias, target in ALIASES.items()]


def check_inputs(cfg: UnlearnConfig) -> None:
    """The data files exist and the method is known: checked before a model loads or a grid starts."""
    from pathlib import Path

    for key in ("forget", "forget_eval", "retain", "retain_eval"):
        value = getattr(cfg, key)
        if value and not value.startswith("builtin:") and not Path(value.removeprefix("file:")).expanduser().is_file():
            raise UserError(f"--{key.replace('_', '-')} {value}: file not found; pass an existing JSON or JSONL file")
    canonical(cfg.method.name)
