"""Round-to-nearest weight quantization in plain torch (CPU or GPU): what a user does to ship a model small, and
what Zhang et al. (ICLR 2025) showed brings unlearned knowledge back — 21% of the forgotten facts remain at full
precision, 83% after 4-bit quantization, because unlearning's small weight changes fall inside one rounding step.

Asymmetric, group-wise along each linear layer's input dimension: per group of `group_size` weights, the range
[min, max] is split into 2^bits − 1 equal steps and every weight moves to its nearest step. The weights stay in
their float dtype (simulated quantization): the numbers a model stored in 8 or 4 bits would compute, to float
rounding for float32 weights, though the zero point is not itself rounded to an integer as GPTQ and AWQ store it.
Worked example (4 bits, one group): weights [−1.0, −0.1, 0.2, 0.5] → step (0.5 − (−1.0)) / 15 = 0.1, levels
−1.0 + 0.1·k → [−1.0, −0.1, 0.2, 0.5] (already on the grid); 0.23 would become 0.2 and 0.26 0.3.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


def quantize_tensor(w: torch.Tensor, bits: int, group_size: int = 128) -> torch.Tensor:
    """`w` (out, in) rounded to `bits` per group of `group_size` consecutive inputs (the last group may be shorter);
    same shape and dtype."""
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be 2..16, got {bits}")
    out, inp = w.shape
    x = w.detach().float()
    pad = (-inp) % group_size
    if pad:  # repeat the last column: padding changes no group's range
        x = torch.cat([x, x[:, -1:].expand(out, pad)], 1)
    g = x.view(out, -1, group_size)
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    levels = 2 ** bits - 1
    scale = (hi - lo).clamp(min=1e-12) / levels
    q = ((g - lo) / scale).round().clamp(0, levels) * scale + lo
    return q.view(out, -1)[:, :inp].to(w.dtype)


SKIP = ("lm_head", "embed")
"""Layers left at full precision, as weight-only quantizers such as GPTQ and AWQ leave them."""


def linear_layers(model) -> list[torch.nn.Linear]:
    return [m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not any(s in name for s in SKIP)]


@torch.no_grad()
def quantize_model(model, bits: int, group_size: int = 128) -> int:
    """Quantize every linear layer's weight in place (not the embeddings or the output head); returns how many
    layers were rounded."""
    layers = linear_layers(model)
    for module in layers:
        module.weight.copy_(quantize_tensor(module.weight, bits, group_size))
    return len(layers)


@contextmanager
def quantized(model, bits: int, group_size: int = 128):
    """`model` rounded in place for the block, its weights put back after: one copy of the linear weights (on the
    CPU), not a second model."""
    layers = linear_layers(model)
    saved = [m.weight.detach().to("cpu", copy=True) for m in layers]
    try:
        quantize_model(model, bits, group_size)
        yield model
    finally:
        with torch.no_grad():
            for m, w in zip(layers, saved, strict=True):
                m.weight.copy_(w)
