"""Training settings chosen from the data size; every one can be overridden and is printed with where it came from.

| training records | LoRA rank / alpha | epochs | max length |
|---|---|---|---|
| < 100            | 8 / 16            | 10     | 512        |
| 100 - 500        | 16 / 32           | 5      | 640        |
| > 500            | 32 / 64           | 3      | 768        |

Effective batch 8 (8 × 1, or 4 × 2 when the longest record exceeds 256 tokens), warmup min(0.1 × steps, 50)
steps, cosine decay to a tenth of the peak. The max length never cuts a record shorter than the table's value;
when the longest record is shorter, that length is used (nothing is padded beyond it anyway).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..config import LoraSettings, SessionConfig, TrainConfig

EFFECTIVE_BATCH = 8


def size_row(n: int) -> dict:
    """The table's row for `n` training records."""
    if n < 100:
        return {"rank": 8, "epochs": 10, "max_length": 512}
    if n <= 500:
        return {"rank": 16, "epochs": 5, "max_length": 640}
    return {"rank": 32, "epochs": 3, "max_length": 768}


@dataclass(frozen=True)
class Resolved:
    """The settings a session trains with, and per setting 'auto' or 'set'."""

    rank: int
    alpha: float
    epochs: int
    batch_size: int
    grad_accum: int
    max_length: int
    warmup_steps: int
    total_steps: int
    lr: float
    over_length: int  # records longer than max_length (cut from the left of the prompt)
    source: dict

    def lora(self, cfg: SessionConfig) -> LoraSettings:
        return LoraSettings(r=self.rank, alpha=self.alpha, dropout=cfg.dropout, targets=cfg.targets)

    def train(self, cfg: SessionConfig) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, grad_accum=self.grad_accum, lr=cfg.lr,
                           warmup_ratio=self.warmup_steps / max(1, self.total_steps), max_length=self.max_length,
                           seed=cfg.seed)

    def as_dict(self) -> dict:
        return asdict(self)


def resolve(cfg: SessionConfig, lengths: list[int]) -> Resolved:
    """Settings for a session whose training records (with any replayed ones) have these token lengths."""
    row, source = size_row(len(lengths)), {}

    def pick(key, auto):
        value = getattr(cfg, key)
        source[key] = "auto" if value is None else "set"
        return auto if value is None else value

    rank = pick("rank", row["rank"])
    alpha = pick("alpha", 2.0 * rank)
    epochs = pick("epochs", row["epochs"])
    longest = max(lengths)
    max_length = pick("max_length", min(row["max_length"], longest) if longest <= row["max_length"] else row["max_length"])
    batch_size = pick("batch_size", 8 if min(longest, max_length) <= 256 else 4)
    grad_accum = pick("grad_accum", max(1, math.ceil(EFFECTIVE_BATCH / batch_size)))
    total = math.ceil(math.ceil(len(lengths) / batch_size) / grad_accum) * epochs
    warmup = pick("warmup_steps", min(round(0.1 * total), 50))
    source["lr"] = "set" if "lr" in cfg.model_fields_set else "default"
    return Resolved(rank, float(alpha), epochs, batch_size, grad_accum, max_length, min(warmup, total), total, cfg.lr,
                    sum(n > max_length for n in lengths), source)
