"""Everything a session trains with, resolved once from the config and the data, printed with where each came from.

| records in the file | LoRA rank / alpha | epochs (without / with rephrasings) | max length |
|---|---|---|---|
| < 100               | 8 / 16            | 10 / 5                              | 512        |
| 100 - 500           | 16 / 32           | 5 / 3                               | 640        |
| > 500               | 32 / 64           | 3 / 2                               | 768        |

With rephrasings on, every record is trained in 1 + n phrasings, so an epoch already shows each fact several
times: half the epochs give each fact twice the views of the single-phrasing table at about twice its cost.
Effective batch 8 (8 × 1, or 4 × 2 when the longest row exceeds 256 tokens), warmup min(0.1 × steps, 50) steps,
cosine decay to a tenth of the peak. The max length never cuts a record shorter than the table's value; when the
longest row is shorter, that length is used. Replay, when not set, scales with the old data: old rows make up
old / (old + new) of each batch, at most half.

`--preset size-tiers` trains with the continual-assistant design's tiers instead: the same rank and max length,
epochs 10 / 5 / 3 whatever the rephrasings, batch × accumulation 2 × 4, 2 × 4, 4 × 2, warmup min(0.1 × rows, 50)
steps, gradient checkpointing on, and bf16 where the device runs it (CUDA, MPS; float32 on the CPU).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..config import LoraSettings, SessionConfig, TrainConfig
from ..retain import old_count

EFFECTIVE_BATCH = 8
MAX_AUTO_REPLAY = 0.5


def size_row(n: int, rephrased: bool, tiers: bool = False) -> dict:
    """The table's row for a file of `n` records; `tiers`: the design's size tiers (`--preset size-tiers`), whose
    epochs do not change with rephrasings and which fix the batch and accumulation."""
    tier = 0 if n < 100 else 1 if n <= 500 else 2
    row = {"rank": (8, 16, 32)[tier], "max_length": (512, 640, 768)[tier]}
    if tiers:
        return {**row, "epochs": (10, 5, 3)[tier], "batch_size": (2, 2, 4)[tier], "grad_accum": (4, 4, 2)[tier]}
    return {**row, "epochs": ((5, 3, 2) if rephrased else (10, 5, 3))[tier]}


@dataclass(frozen=True)
class Plan:
    """The settings of one session, each with its source ('auto', 'set' or 'default') in `source`."""

    records: int  # records of the file trained on
    rows: int  # training rows: the records and their rephrasings
    old_rows: int  # earlier sessions' rows available for replay
    rank: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]
    epochs: int
    batch_size: int
    grad_accum: int
    max_length: int
    warmup_steps: int
    total_steps: int
    lr: float
    seed: int
    rephrase: int
    replay: float  # share of each batch from earlier sessions
    replay_per_batch: int  # old rows added to each batch of `batch_size` new ones
    distill: float
    anchor: float
    over_length: int  # rows longer than max_length (cut from the left of the prompt)
    gradient_checkpointing: bool
    source: dict

    @property
    def lora(self) -> LoraSettings:
        return LoraSettings(rank=self.rank, alpha=self.alpha, dropout=self.dropout, targets=self.targets)

    @property
    def train(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, grad_accum=self.grad_accum, lr=self.lr,
                           warmup_ratio=self.warmup_steps / max(1, self.total_steps), max_length=self.max_length,
                           seed=self.seed)

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self, mode: str) -> list[tuple[str, str, str]]:
        """(setting, value, source) rows for the printed settings table."""
        s = self.source
        replay = (f"{self.replay:.0%} of each batch: {self.replay_per_batch} of {self.old_rows} old rows per "
                  f"{self.batch_size} new" if self.old_rows else "- (first session)")
        return [("rephrasings", f"{self.rephrase} per record: {self.records} records -> {self.rows} rows", s["rephrase"]),
                ("rank / alpha", f"{self.rank} / {self.alpha:g}", s["rank"]), ("epochs", str(self.epochs), s["epochs"]),
                ("batch × accumulation", f"{self.batch_size} × {self.grad_accum}", s["batch_size"]),
                ("max length", f"{self.max_length} tokens ({self.over_length} rows longer, cut)", s["max_length"]),
                ("warmup / total steps", f"{self.warmup_steps} / {self.total_steps}, cosine", s["warmup_steps"]),
                ("learning rate", f"{self.lr:g}", s["lr"]), ("mode", mode, "assistant"),
                ("gradient checkpointing", "on" if self.gradient_checkpointing else "off", s["gradient_checkpointing"]),
                ("replay", replay, s["replay"]),
                ("distill to the previous session", f"λ {self.distill:g} on replayed rows" if self.old_rows and
                 self.distill else "off", s["distill"]),
                ("anchor to the base", f"λ {self.anchor:g} on 32 built-in prompts" if self.anchor else "off",
                 s["anchor"])]


def resolve(cfg: SessionConfig, records: int, lengths: list[int], old_rows: int) -> Plan:
    """The plan for a session of `records` file records trained as rows of these token lengths, with `old_rows`
    rows of earlier sessions to replay."""
    tiers = cfg.preset == "size-tiers"
    row, source = size_row(records, cfg.rephrase > 0, tiers), {}

    def pick(key, auto):
        value = getattr(cfg.lora if key in ("rank", "alpha") else cfg, key)
        source[key] = ("size-tiers" if tiers else "auto") if value is None else "set"
        return auto if value is None else value

    rank = pick("rank", row["rank"])
    alpha = pick("alpha", 2.0 * rank)
    epochs = pick("epochs", row["epochs"])
    longest = max(lengths)
    max_length = pick("max_length", min(row["max_length"], longest))
    batch_size = pick("batch_size", row.get("batch_size") or (8 if min(longest, max_length) <= 256 else 4))
    grad_accum = pick("grad_accum", row.get("grad_accum") or max(1, math.ceil(EFFECTIVE_BATCH / batch_size)))
    total = math.ceil(math.ceil(len(lengths) / batch_size) / grad_accum) * epochs
    warmup = pick("warmup_steps", min(round(0.1 * (len(lengths) if tiers else total)), 50))
    replay = pick("replay", min(MAX_AUTO_REPLAY, old_rows / (old_rows + len(lengths)))) if old_rows else 0.0
    source.setdefault("replay", "-")
    for key in ("lr", "rephrase", "distill", "anchor"):
        source[key] = "set" if key in cfg.model_fields_set else "default"
    source["gradient_checkpointing"] = "set" if cfg.gradient_checkpointing else "size-tiers" if tiers else "default"
    return Plan(records, len(lengths), old_rows, rank, float(alpha), cfg.lora.dropout, cfg.lora.targets, epochs, batch_size,
                grad_accum, max_length, min(warmup, total), total, cfg.lr, cfg.seed, cfg.rephrase, replay,
                old_count(batch_size, replay), cfg.distill, cfg.anchor, sum(n > max_length for n in lengths),
                cfg.gradient_checkpointing or tiers, source)
