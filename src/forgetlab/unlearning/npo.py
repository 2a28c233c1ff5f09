"""`npo`: negative preference optimisation (Zhang et al. 2024) — push each forget answer's likelihood below the
frozen reference's, with a loss that saturates instead of diverging like gradient ascent."""

from __future__ import annotations

import torch

from ..losses import answer_logprobs, npo_loss
from .reference import cache_logprobs, row_keys
from .retain import retain_nll


class NPO:
    """NPO: −(2/β)·log σ(−β·(log π_θ − log π_ref)) on forget answers + rc·NLL(retain); β = 0.1."""

    def __init__(self, settings):
        self.cfg = settings

    def prepare(self, model, rows, ctx):
        ctx.cache["ref_logp"] = cache_logprobs(model, rows, ctx)

    def loss(self, model, batch, ctx):
        logp, _ = answer_logprobs(model, batch)
        ref = torch.tensor([ctx.cache["ref_logp"][k] for k in row_keys(batch)], device=logp.device)
        return npo_loss(logp, ref, self.cfg.beta) + retain_nll(model, ctx, self.cfg.rc)
