"""`rmu`: representation misdirection (Li et al. 2024, WMDP) — at one layer ℓ, push the hidden states of forget
text to a fixed random direction c·u and hold those of retain text where the frozen model had them.

ℓ defaults to layer 7 of a 32-layer model scaled to this model's depth; c and α are RMU's documented values
(6.5, 1200). The control vector's length is c times the layer's mean hidden-state norm on the forget text (u is a
fixed random unit vector, uniform entries as in the source): RMU's absolute c was set for Zephyr-7B's activation
scale, and scaling it by the norm, as adaptive RMU does, makes the same c mean the same push on any model.
In full-weight mode only the MLP down-projections of layers ℓ−2..ℓ train, as in the source.
"""

from __future__ import annotations

import torch

from ..batching import collate, to_device
from ..losses import masked_mse, unwrap
from .reference import cache_hidden, layer_hidden, row_keys


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the token prefix all sequences share (0 for none), leaving at least one token of each."""
    n = min(len(s) for s in seqs) - 1
    for i in range(max(0, n)):
        if any(s[i] != seqs[0][i] for s in seqs):
            return i
    return max(0, n)


def rmu_layer(model, layer: int | None) -> int:
    n = unwrap(model).config.num_hidden_layers
    return min(n - 1, layer if layer is not None else max(2, round(7 * n / 32)))


class RMU:
    """RMU: ||h_ℓ(forget) − c·u||² + α·||h_ℓ(retain) − h_ℓ,frozen(retain)||² at layer ℓ."""

    # The push towards c·u is slow: with the others' 9 steps nothing was forgotten. Measured on the bundled model
    # (built-in facts): LoRA r8 forget 0.33 / retain 0.88 after 6 epochs of batch 4 at 2e-3; full weights 0.24 / 0.96
    # at 5e-3. Keys the user sets win.

    def __init__(self, settings):
        self.cfg = settings

    def trainable(self, model):
        """Full-weight mode: the MLP down-projections of layers ℓ−2..ℓ."""
        ell = rmu_layer(model, self.cfg.layer)
        layers = unwrap(model).get_decoder().layers
        return [p for i in range(max(0, ell - 2), ell + 1) for p in layers[i].mlp.down_proj.parameters()]

    @torch.no_grad()
    def prepare(self, model, rows, ctx):
        # Tokens every row starts with (a template such as "Question:") have the same hidden states in forget and
        # retain text: they cannot be both steered and kept, so the forget term skips them.
        ctx.cache["rmu_skip"] = common_prefix([r.input_ids for r in [*rows, *ctx.retain]])
        ell = rmu_layer(model, self.cfg.layer)
        device = next(model.parameters()).device
        norms = []
        for s in range(0, len(rows), 16):
            batch = to_device(collate(rows[s:s + 16], ctx.tokenizer.pad_token_id), device)
            h = layer_hidden(model, batch, ell).float()
            keep = batch["attention_mask"].bool()
            keep[:, :ctx.cache["rmu_skip"]] = False  # (the first token's state is an outlier many times larger)
            norms.append(h.norm(dim=-1)[keep])
        scale = float(torch.cat(norms).mean())
        g = torch.Generator().manual_seed(ctx.train.seed)
        u = torch.rand(h.shape[-1], generator=g)
        ctx.cache["rmu"] = {"layer": ell, "control": (self.cfg.steering * scale * u / u.norm()).to(device),
                            "retain": cache_hidden(model, ctx.retain, ctx, ell)}

    def loss(self, model, batch, ctx):
        rmu = ctx.cache["rmu"]
        h = layer_hidden(model, batch, rmu["layer"])
        mask = batch["attention_mask"].clone()
        mask[:, :ctx.cache["rmu_skip"]] = 0
        loss = masked_mse(h, rmu["control"], mask)
        retain = ctx.retain_batch(h.device)
        if retain is not None and self.cfg.alpha:
            hr = layer_hidden(model, retain, rmu["layer"])
            frozen = torch.zeros_like(hr)
            for i, key in enumerate(row_keys(retain)):
                frozen[i, :len(key)] = rmu["retain"][key]
            loss = loss + self.cfg.alpha * masked_mse(hr, frozen, retain["attention_mask"])
        return loss
