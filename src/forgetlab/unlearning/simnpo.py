"""`simnpo`: SimNPO (Fan et al. 2024) — NPO without a reference model, the log-likelihood normalised by length."""

from __future__ import annotations

from ..losses import answer_logprobs, simnpo_loss
from .retain import retain_nll


class SimNPO:
    """SimNPO: −(2/β)·log σ(−(β/|y|)·log π_θ(y|x) − γ) on forget answers + rc·NLL(retain)."""

    def __init__(self, settings):
        self.cfg = settings

    def loss(self, model, batch, ctx):
        logp, n = answer_logprobs(model, batch)
        return simnpo_loss(logp, n, self.cfg.beta, self.cfg.gamma) + retain_nll(model, ctx, self.cfg.rc)
