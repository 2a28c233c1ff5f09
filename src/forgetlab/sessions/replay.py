"""Replay for sessions: earlier sessions' training records make up a fixed share of every batch.

The old records for each batch are drawn by a generator seeded with (seed, batch number), so a session resumed
from an epoch checkpoint draws exactly what the uninterrupted session would have.
"""

from __future__ import annotations

import random

from ..batching import Encoded, collate, old_count, unbatch
from ..losses import nll


class SessionReplay:
    """The loop's method object: answer-token NLL on the batch plus replayed records (none when `share` is 0)."""

    def __init__(self, old: list[Encoded], share: float, seed: int, pad_id: int, start_batch: int = 0):
        self.old, self.share, self.seed, self.pad_id = old, share, seed, pad_id
        self.batch_number = start_batch

    def mixed(self, batch):
        k = old_count(batch["input_ids"].shape[0], self.share) if self.old else 0
        rng = random.Random(self.seed * 1_000_003 + self.batch_number)
        self.batch_number += 1
        if k == 0:
            return batch
        rows = unbatch(batch) + [self.old[rng.randrange(len(self.old))] for _ in range(k)]
        return {key: v.to(batch["input_ids"].device) for key, v in collate(rows, self.pad_id).items()}

    def loss(self, model, batch, ctx):
        return nll(model, self.mixed(batch))
