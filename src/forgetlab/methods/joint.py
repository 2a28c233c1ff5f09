"""`joint`: one adapter trained on all tasks at once. Nothing comes after anything, so nothing is forgotten:
the upper bound a continual strategy is compared with."""

from __future__ import annotations

from ..losses import nll


class Joint:
    """Reference: one adapter trained on every task's data mixed together (the upper bound)."""

    stages = "joint"
    same_parameters = True

    def __init__(self, settings=None):
        pass

    def loss(self, model, batch, ctx):
        return nll(model, batch)
