"""`gd`: gradient difference — ascend on the forget facts, descend on the retain facts."""

from __future__ import annotations

from ..losses import capped_nll
from .retain import retain_nll


class GD:
    """Gradient difference: −min(NLL(forget), cap) + rc·NLL(retain)."""

    def __init__(self, settings):
        self.cfg = settings

    def loss(self, model, batch, ctx):
        return -capped_nll(model, batch, self.cfg.ascent_cap) + retain_nll(model, ctx, self.cfg.rc)
