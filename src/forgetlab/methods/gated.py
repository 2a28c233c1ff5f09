"""`gated`: one adapter per task, mixed with the earlier model by a small gating network per adapted layer.

In every adapted layer, stage k's output is, token by token,
    h_k(x) = g_k(x) · (W x + Δ_k x) + (1 − g_k(x)) · h_{k−1}(x),     h_1(x) = W x + Δ_1 x,
i.e. h = W x + Σ_j c_j(x) Δ_j x with c_j(x) = g_j(x) Π_{l>j} (1 − g_l(x)) (the first adapter has g = 1). The gate
reads both the layer's input and the new adapter's output at that token:
    g_k(x) = sigmoid(speed · (b + (u·x̂ + w·d̂) / √(n_in + n_out))),   x̂ = x / rms(x),  d = Δ_k x,  d̂ = d / rms(d),
so it can open for the inputs the new task needs and stay shut for the rest: a selective change, not a global one.
A new gate starts at u = w = 0 and g = `strategy.gated.init` for every input (the old model, nearly), and opens
only where training asks for it; earlier adapters and gates are frozen.

A gate only learns to stay shut on an input it has seen wanting the old model. With `strategy.gated.mix` > 0 (the
mixed curriculum) each batch gets that share of earlier tasks' examples from a replay buffer (the `replay` strategy's
own), so every gate is trained on both sides of its decision; `strategy.gated.schedule` sets the share per task
instead (e.g. 0/100 → 30/70 → 50/50), as `strategy.replay.schedule` does for replay. After each task the mean gate
value over each seen task's inputs is recorded per layer (saved, printed in the run's report and plotted): which
inputs route where.

Under Adam every parameter moves by about the learning rate per step; on the gate's logit scale that would keep a
gate shut for a whole task at LoRA learning rates, so `speed` scales the logit: its bias moves it by about speed · lr
per step, its input-reading part (divided by √n of the n inputs it reads) by up to about speed · lr · √n when the
inputs agree. (Dividing by n instead was tried on the bundled model: the gates then barely moved off their bias.)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..batching import encode
from ..config import StrategyConfig
from ..forward import per_row
from ..losses import nll
from ..model import adapter_name, add_frozen_stack_adapter, lora_layers
from .replay import Replay


def _rms_normalised(t: torch.Tensor) -> torch.Tensor:
    return t * torch.rsqrt(t.float().pow(2).mean(-1, keepdim=True) + 1e-12).to(t.dtype)


class GateNet(nn.Module):
    """g(x, d) per token, (..., n_in) and (..., n_out) → (..., 1) in (0, 1); g = `init` everywhere when created."""

    def __init__(self, n_in: int, n_out: int, init: float, speed: float):
        super().__init__()
        self.speed = speed
        self.u = nn.Parameter(torch.zeros(n_in))
        self.w = nn.Parameter(torch.zeros(n_out))
        self.b = nn.Parameter(torch.tensor(math.log(init / (1 - init)) / speed))
        self.register_buffer("norm", torch.tensor(1 / math.sqrt(n_in + n_out)), persistent=False)

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        read = _rms_normalised(x) @ self.u.to(x.dtype) + _rms_normalised(d) @ self.w.to(d.dtype)
        return torch.sigmoid(self.speed * (self.b + self.norm * read.float()))[..., None]


def coefficients(gates: list[torch.Tensor]) -> list[torch.Tensor]:
    """c_j = g_j Π_{l>j} (1 − g_l) for the adapters in order, given the gates g_2, ..., g_n (the first adapter's g is
    1, so c_1 = Π_l (1 − g_l))."""
    coefs = []
    for j in range(len(gates) + 1):
        c = gates[j - 1] if j > 0 else torch.ones(())
        for later in gates[j:]:
            c = c * (1 - later)
        coefs.append(c)
    return coefs


class GatedLayer:
    """The hooks that turn one PEFT LoRA layer's plain sum of adapters into the gated mixture.

    PEFT adds scaling · B(A(x)) for every active adapter; a hook on each B keeps its output aside and gives PEFT a zero
    instead, and a hook on the layer then adds Σ c_j(x) · scaling_j · B_j(A_j(x)) once every adapter has run. When
    adapters are off (PEFT's `disable_adapter`), no B runs and nothing is added: the base model, exactly.
    """

    def __init__(self, layer, names: list[str]):
        self.layer, self.names = layer, names  # `names` is the strategy's list: later adapters appear in it
        self.x: torch.Tensor | None = None
        self.outs: dict[str, torch.Tensor] = {}
        self.record: list | None = None  # when a list, each forward appends the newest gate (batch, seq)
        self.hooked: set[str] = set()
        layer.register_forward_pre_hook(self._input)
        layer.register_forward_hook(self._mix)

    def hook(self, name: str) -> None:
        if name in self.hooked:
            return
        self.hooked.add(name)

        def aside(module, inputs, out, name=name):
            self.outs[name] = out
            return torch.zeros_like(out)

        self.layer.lora_B[name].register_forward_hook(aside)

    def _input(self, module, args):
        self.x = args[0]
        self.outs = {}

    def _mix(self, module, args, result):
        outs, self.outs, x, self.x = self.outs, {}, self.x, None  # nothing held past the call
        if not outs:
            return result
        names = [n for n in self.names if n in outs]
        scaled = {n: outs[n] * self.layer.scaling[n] for n in names}
        nets = self.layer.forgetlab_gates
        gates = [nets[n](x, scaled[n]) for n in names[1:]]
        if self.record is not None and gates:
            self.record.append(gates[-1][..., 0].detach())
        for n, c in zip(names, coefficients(gates), strict=True):
            result = result + (c.to(result.dtype) * scaled[n]).to(result.dtype)
        return result


class Gated:
    """One adapter per task, mixed with the earlier model by a gating network per layer that reads each input."""

    stages = "sequential"
    same_parameters = False

    def __init__(self, settings: StrategyConfig):
        self.cfg = settings.gated
        self.names: list[str] = []
        self.layers: dict[int, GatedLayer] = {}
        mixed = settings.replay.model_copy(update={"ratio": self.cfg.mix, "schedule": self.cfg.schedule})
        self.curriculum = Replay(settings.model_copy(update={"replay": mixed}))

    def before_task(self, model, task, ctx):
        self.curriculum.before_task(model, task, ctx)
        if ctx.task_index == 0:
            self.names[:] = [model.active_adapter]
            return
        name = adapter_name(task.name)
        add_frozen_stack_adapter(model, name)
        self.names.append(name)
        for layer in lora_layers(model):
            if name not in layer.lora_A:
                continue
            if not hasattr(layer, "forgetlab_gates"):
                layer.forgetlab_gates = nn.ModuleDict()
            layer.forgetlab_gates.requires_grad_(False)
            device = layer.lora_A[name].weight.device
            layer.forgetlab_gates[name] = GateNet(layer.in_features, layer.out_features, self.cfg.init,
                                                  self.cfg.speed).to(device)
            if id(layer) not in self.layers:
                self.layers[id(layer)] = GatedLayer(layer, self.names)
            gl = self.layers[id(layer)]
            for adapter in self.names:
                gl.hook(adapter)

    def loss(self, model, batch, ctx):
        return nll(model, self.curriculum.mixed(batch, ctx) if self.curriculum.share > 0 else batch)

    @torch.no_grad()
    def gate_means(self, model, examples, pad_id: int, batch_size: int = 8) -> list[float]:
        """The newest gate's mean over the real tokens of `examples` (Encoded), per adapted layer in model order."""
        layers = [self.layers[id(m)] for m in lora_layers(model) if id(m) in self.layers]

        def sums(m, batch, _):  # per row: the gate summed over its real tokens at every layer, and their count
            for gl in layers:
                gl.record = []
            m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            mask = batch["attention_mask"].float()
            per_layer = torch.stack([(gl.record[0].float() * mask).sum(-1) for gl in layers], -1)  # (batch, layers)
            return [(row.tolist(), float(n)) for row, n in zip(per_layer, mask.sum(-1), strict=True)]

        try:
            rows = per_row(model, examples, pad_id, sums, batch_size)
        finally:
            for gl in layers:
                gl.record = None
        count = sum(n for _, n in rows)
        return [sum(r[k] for r, _ in rows) / count for k in range(len(layers))]

    def after_task(self, model, task, ctx):
        self.curriculum.after_task(model, task, ctx)
        if len(self.names) < 2:
            return None
        tok, n = ctx.tokenizer, self.cfg.probe
        per_task = {t.name: self.gate_means(model, [encode(tok, ex, ctx.train.max_length) for ex in t.train[:n]],
                                            tok.pad_token_id) for t in ctx.tasks}
        return {"gate_adapter": self.names[-1], "gates_by_task": per_task,
                "gates": {name: sum(v) / len(v) for name, v in per_task.items()}}
