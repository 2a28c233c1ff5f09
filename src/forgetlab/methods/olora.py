"""`olora`: O-LoRA (Wang et al., 2023). A new adapter per task; earlier adapters stay active but frozen (the paper keeps
them concatenated and frozen: the same computation), and the new adapter's down-projections A are pushed to be
orthogonal to every earlier adapter's, with an optional L2 term on the new adapter (the authors' λ2):
    L_new + λ1 Σ_layers Σ_old Σ_jk |(A_new A_oldᵀ)_jk| + λ2 Σ_tensors ||θ_new||₂
so the new task is learned in a subspace the earlier tasks' adapters do not read from.
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
        """λ1's term: Σ |A_new A_oldᵀ| over every adapted layer and earlier adapter."""
        new, olds = self.names[-1], self.names[:-1]
        return orthogonality_penalty((layer.lora_A[new].weight, layer.lora_A[old].weight)
                                     for layer in lora_layers(model) for old in olds
                                     if new in layer.lora_A and old in layer.lora_A)

    def size(self, model):
        """λ2's term: the sum of the L2 norms of the new adapter's A and B matrices."""
        new = self.names[-1]
        return sum(part[new].weight.norm() for layer in lora_layers(model)
                   for part in (layer.lora_A, layer.lora_B) if new in part)

    def loss(self, model, batch, ctx):
        loss = nll(model, batch)
        if len(self.names) > 1:
            loss = loss + self.cfg.lam * self.penalty(model).to(loss.device)
            if self.cfg.l2 > 0:
                loss = loss + self.cfg.l2 * self.size(model).to(loss.device)
        return loss
