"""`gated`: one adapter per task plus a learned gate per adapted layer.

In every adapted layer, stage k's output is  g_k · (stage k's adapter applied) + (1 − g_k) · (stage k−1's output),
i.e. h = W x + Σ_j c_j Δ_j x with c_j = g_j Π_{l>j} (1 − g_l) (the first adapter has g = 1). A new gate starts
near 0 (`strategy.gated.init`), so a new task starts from the old model and opens its gate only as far as it
needs; earlier adapters and gates are frozen. Gate values are returned after each task, saved and plotted.

Each gate is stored as s with g = sigmoid(speed · s). Adam moves every parameter by about the learning rate per
step, which on a logit scale would keep a gate shut for a whole task at LoRA learning rates; the factor `speed`
gives the gates a proportionally larger step without reaching into the loop's optimizer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..losses import nll
from ..model import adapter_name, add_frozen_stack_adapter, lora_layers


def coefficient(gates: nn.ParameterDict | None, names: list[str], name: str, speed: float = 1.0):
    """c_j for adapter `name` in a layer: g_j (1 for the first adapter) times (1 − g_l) for every later adapter,
    with g = sigmoid(speed · s) for a stored gate s."""
    k = names.index(name)
    coef = torch.sigmoid(speed * gates[name]) if k > 0 else torch.ones(())
    for later in names[k + 1:]:
        coef = coef * (1 - torch.sigmoid(speed * gates[later]))
    return coef


class Gated:
    """One adapter per task, mixed with the earlier ones by a learned gate per layer (g starts near 0)."""

    stages = "sequential"
    same_parameters = False

    def __init__(self, settings):
        self.cfg = settings.gated
        self.names: list[str] = []
        self.hooked: set[int] = set()

    def before_task(self, model, task, ctx):
        if ctx.task_index == 0:
            self.names = [model.active_adapter]
            return
        name = adapter_name(task.name)
        add_frozen_stack_adapter(model, name)
        self.names.append(name)
        start = math.log(self.cfg.init / (1 - self.cfg.init)) / self.cfg.speed
        for layer in lora_layers(model):
            if not hasattr(layer, "forgetlab_gates"):
                layer.forgetlab_gates = nn.ParameterDict()
            for gate in layer.forgetlab_gates.values():
                gate.requires_grad_(False)
            device = layer.lora_A[name].weight.device
            layer.forgetlab_gates[name] = nn.Parameter(torch.tensor(start, device=device))
            for adapter in self.names:
                self._hook(layer, adapter)

    def _hook(self, layer, adapter: str) -> None:
        """Scale adapter's B output in `layer` by its coefficient (registered once per module)."""
        module = layer.lora_B[adapter]
        if id(module) in self.hooked:
            return
        self.hooked.add(id(module))
        names, speed = self.names, self.cfg.speed

        def scale(mod, inputs, out):
            return out * coefficient(layer.forgetlab_gates, names, adapter, speed).to(out.device, out.dtype)

        module.register_forward_hook(scale)

    def loss(self, model, batch, ctx):
        return nll(model, batch)

    def after_task(self, model, task, ctx):
        if len(self.names) < 2:
            return None
        new = self.names[-1]
        gates = {name: m.forgetlab_gates[new].detach() for name, m in model.named_modules()
                 if hasattr(m, "forgetlab_gates") and new in m.forgetlab_gates}
        return {"gates": {name: float(torch.sigmoid(self.cfg.speed * s)) for name, s in gates.items()}}
