"""`ga`: gradient ascent on the forget facts — the plainest unlearning, and the one that breaks models fastest."""

from __future__ import annotations

from ..losses import capped_nll


class GA:
    """Gradient ascent: minimise −min(NLL, cap) of the forget answers (no retain term)."""

    def __init__(self, settings):
        self.cfg = settings

    def loss(self, model, batch, ctx):
        return -capped_nll(model, batch, self.cfg.ascent_cap)
