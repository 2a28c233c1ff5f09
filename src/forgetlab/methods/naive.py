"""`naive`: keep training the same adapter on each new task. The baseline every strategy is measured against."""

from __future__ import annotations

from ..losses import nll


class Naive:
    """Plain fine-tuning, task after task, on one adapter: no protection against forgetting."""

    stages = "sequential"
    same_parameters = True

    def __init__(self, settings=None):
        pass

    def loss(self, model, batch, ctx):
        return nll(model, batch)
