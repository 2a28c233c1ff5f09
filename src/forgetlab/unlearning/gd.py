"""`gd`: gradient difference — ascend on the forget facts, descend on the retain facts."""

from __future__ import annotations

from ..losses import nll
from .retain import retain_nll


class GD:
    """Gradient difference: −NLL(forget) + rc·NLL(retain)."""

    def __init__(self, settings):
        self.cfg = settings

    def loss(self, model, batch, ctx):
        return -nll(model, batch) + retain_nll(model, ctx, self.cfg.rc)
