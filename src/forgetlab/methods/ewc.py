"""`ewc`: elastic weight consolidation over the LoRA parameters.

After each task, a diagonal Fisher F of that task's loss is estimated at the checkpoint θ* (squared gradients of
single examples); the Fishers of all earlier tasks add up. Training then minimises
    L_new(θ) + λ · ½ Σ F (θ − θ*)²,
which is zero at the last checkpoint and grows fastest along the directions earlier tasks were most sensitive to.
"""

from __future__ import annotations

from ..batching import encode, fixed_batches
from ..losses import diagonal_fisher, ewc_penalty, nll
from ..model import trainable_named


class EWC:
    """Elastic weight consolidation: a diagonal-Fisher quadratic penalty anchoring earlier tasks' weights."""

    stages = "sequential"
    same_parameters = True

    def __init__(self, settings):
        self.cfg = settings.ewc
        self.fisher: dict = {}
        self.anchor: dict = {}

    def penalty(self, model):
        return ewc_penalty(trainable_named(model), self.fisher, self.anchor)

    def loss(self, model, batch, ctx):
        loss = nll(model, batch)
        if self.fisher:
            loss = loss + self.cfg.lam * self.penalty(model).to(loss.device)
        return loss

    def after_task(self, model, task, ctx):
        examples = [encode(ctx.tokenizer, ex, ctx.train.max_length) for ex in task.train[: self.cfg.samples]]
        batches = fixed_batches(examples, 1, ctx.tokenizer.pad_token_id)
        params = dict(trainable_named(model))
        fisher = diagonal_fisher(model, batches, params.items())
        self.fisher = {n: self.fisher.get(n, 0) + f.to(params[n].device) for n, f in fisher.items()}
        self.anchor = {n: p.detach().clone() for n, p in params.items()}
        return {"fisher_mean": float(sum(f.sum() for f in self.fisher.values())
                                     / sum(f.numel() for f in self.fisher.values()))}
