"""`base`: no training at all. The base model's accuracy on every task: the floor (and, for general knowledge,
what every strategy should keep)."""

from __future__ import annotations

from ..losses import nll


class Base:
    """Reference: the untrained base model (no stage is trained)."""

    stages = "none"
    same_parameters = True

    def __init__(self, settings=None):
        pass

    def loss(self, model, batch, ctx):
        return nll(model, batch)
