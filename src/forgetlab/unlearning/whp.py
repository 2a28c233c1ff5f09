"""`whp` (alias `ria`): train on random incorrect answers — every wrong answer of each fact is a training row, so
the probability mass moves off the right answer onto many wrong ones (Deeb & Roger's RIA; WHP in their naming)."""

from __future__ import annotations

from ..losses import nll
from .retain import retain_nll


class WHP:
    """Random incorrect answers: NLL on each fact restated with its wrong answers + rc·NLL(retain)."""

    every = True

    def __init__(self, settings):
        self.cfg = settings

    def rows(self, forget, ctx):
        return forget.wrong_rows(ctx.tokenizer, ctx.train.max_length, every=self.every, seed=ctx.train.seed)

    def loss(self, model, batch, ctx):
        return nll(model, batch) + retain_nll(model, ctx, self.cfg.rc)
