"""`olora`: O-LoRA. A new adapter per task; earlier adapters stay active but frozen, and the new adapter's
down-projections A are pushed to be orthogonal to every earlier adapter's:
    L_new + λ Σ_layers Σ_old ||A_new A_oldᵀ||²_F
so the new task is learned in a subspace the earlier tasks do not read from.
"""

from __future__ import annotations

from ..losses import nll, orthogonality_penalty
from ..model import adapter_name, add_frozen_stack_adapter, lora_layers


class OLoRA:
    """O-LoRA: a new adapter per task, earlier ones frozen, with an orthogonality penalty on the A matrices."""

    stages = "sequential"
    same_parameters = False

    def __init__(self, settings):
        self.cfg = settings.olora
        self.names: list[str] = []  # adapters in order; the last one is being trained

    def before_task(self, model, task, ctx):
        if ctx.task_index == 0:
            self.names = [model.active_adapter]
            return
        self.names.append(adapter_name(task.name))
        add_frozen_stack_adapter(model, self.names[-1])

    def penalty(self, model):
        new, olds = self.names[-1], self.names[:-1]
        return orthogonality_penalty((layer.lora_A[new].weight, layer.lora_A[old].weight)
                                     for layer in lora_layers(model) for old in olds
                                     if new in layer.lora_A and old in layer.lora_A)

    def loss(self, model, batch, ctx):
        loss = nll(model, batch)
        if len(self.names) > 1:
            loss = loss + self.cfg.lam * self.penalty(model).to(loss.device)
        return loss
