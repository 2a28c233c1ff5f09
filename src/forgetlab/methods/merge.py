"""`merge`: before each new task, merge the current adapter into the base weights (in float32) and start a fresh
adapter. The model's outputs do not change at the merge; each task then gets an adapter of its own on top of
everything learned before."""

from __future__ import annotations

from ..losses import nll
from ..model import merge_into_base


class Merge:
    """Merge the previous task's adapter into the base weights, then train a fresh adapter."""

    stages = "sequential"
    same_parameters = False

    def __init__(self, settings=None):
        pass

    def before_task(self, model, task, ctx):
        if ctx.task_index > 0:
            merge_into_base(model, model.active_adapter)

    def loss(self, model, batch, ctx):
        return nll(model, batch)
