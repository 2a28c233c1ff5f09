"""`replay`: keep a buffer of earlier tasks' examples and mix them into every batch of the new task.

The old examples are added to the batch (the new ones are all kept), so that old examples make up the configured
share of it: with ratio 0.3 a batch of 8 new examples gets 3 old ones (3/11 ≈ 0.3, rounded). The share is fixed
(`strategy.replay.ratio`) or follows a per-task schedule (`strategy.replay.schedule`, e.g. 0/100 → 30/70 → 50/50).
The buffer holds at most `strategy.replay.buffer` examples, shared evenly between the earlier tasks.
"""

from __future__ import annotations

import random

from ..batching import encode
from ..losses import nll
from ..retain import old_count, with_rows


class Replay:
    """Experience replay: a buffer of earlier tasks' examples mixed into each batch."""

    stages = "sequential"
    same_parameters = True

    def __init__(self, settings):
        self.cfg = settings.replay
        self.pools: list[list] = []  # per earlier task: its encoded examples in a fixed random order
        self.rng = random.Random(0)
        self.share = 0.0
        self.old: list = []  # the buffer as of the current task's start

    def buffer(self) -> list:
        """The examples currently replayed: the first buffer/len(pools) of each earlier task's pool."""
        if not self.pools:
            return []
        quota = max(1, self.cfg.buffer // len(self.pools))
        return [ex for pool in self.pools for ex in pool[:quota]]

    def share_for(self, task_index: int) -> float:
        sched = self.cfg.schedule
        return sched[min(task_index, len(sched) - 1)] if sched else self.cfg.ratio

    def before_task(self, model, task, ctx):
        self.share = self.share_for(ctx.task_index)
        self.rng = random.Random(ctx.train.seed * 1000 + ctx.task_index)
        self.old = self.buffer()

    def mixed(self, batch, ctx):
        """The batch with old examples added (a new padded batch), or the batch itself when nothing is replayed."""
        k = old_count(batch["input_ids"].shape[0], self.share) if self.old else 0
        rows = [self.old[self.rng.randrange(len(self.old))] for _ in range(k)]
        return with_rows(batch, rows, ctx.tokenizer.pad_token_id)

    def loss(self, model, batch, ctx):
        return nll(model, self.mixed(batch, ctx))

    def after_task(self, model, task, ctx):
        pool = [encode(ctx.tokenizer, ex, ctx.train.max_length) for ex in task.train]
        random.Random(f"replay-{task.name}-{ctx.train.seed}").shuffle(pool)
        self.pools.append(pool)
