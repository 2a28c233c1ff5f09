"""`kl`: self-distillation. The training loss plus λ·KL(p_ref || p_model) of the next-token distributions.

The reference is the base model (`reference: base`, the adapter disabled: no second copy in memory) or the model
as it was at the end of the previous task (`reference: previous`: its adapter weights are kept and swapped in for
the reference forward pass). The KL is taken at the answer tokens of the current batch, at built-in anchor prompts
(everyday questions answered once by the base model, see `data.general.ANCHORS`), or both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..batching import collate, encode, to_device
from ..data.general import anchor_messages
from ..data.records import Example
from ..losses import answer_logits, kl_to_reference
from ..model import trainable_named


class KL:
    """Self-distillation: KL to the base model or the previous task's model, on the batch and/or anchor prompts."""

    stages = "sequential"
    same_parameters = True

    def __init__(self, settings):
        self.cfg = settings.kl
        self.anchors: list = []  # encoded anchor prompts with the base model's answers
        self.anchor_ref: list[torch.Tensor] = []  # per anchor: reference logits at its answer tokens
        self.ref_state: dict[str, torch.Tensor] = {}
        self.pos = 0

    def before_task(self, model, task, ctx):
        self.pos = 0  # each task starts the anchor rotation afresh, so a resumed run rotates the same way
        if self.cfg.reference == "previous":
            self.ref_state = {n: p.detach().clone() for n, p in trainable_named(model)}
        if self.cfg.on != "batch":
            if not self.anchors:
                self.anchors = anchor_examples(model, ctx)
            if not self.anchor_ref or self.cfg.reference == "previous":
                device = next(model.parameters()).device
                self.anchor_ref = [self.reference_logits(model, to_device(collate([a], ctx.tokenizer.pad_token_id),
                                                                                  device)) for a in self.anchors]

    @torch.no_grad()
    def reference_logits(self, model, batch) -> torch.Tensor:
        """The reference model's logits at the batch's answer tokens, (n_answer_tokens, vocab)."""
        was_training = model.training
        model.eval()
        try:
            if self.cfg.reference == "base":
                with model.disable_adapter():
                    return answer_logits(model, batch)[0]
            params = dict(trainable_named(model))
            current = {n: p.detach().clone() for n, p in params.items()}
            for n, p in params.items():
                p.copy_(self.ref_state[n])
            try:
                return answer_logits(model, batch)[0]
            finally:
                for n, p in params.items():
                    p.copy_(current[n])
        finally:
            model.train(was_training)

    def loss(self, model, batch, ctx):
        # Reference logits first: swapping weights after the forward pass would invalidate its graph.
        ref = self.reference_logits(model, batch) if self.cfg.on != "anchors" else None
        logits, targets = answer_logits(model, batch)
        loss = F.cross_entropy(logits.float(), targets)
        if ref is not None:
            loss = loss + self.cfg.lam * kl_to_reference(logits, ref)
        if self.cfg.on != "batch":
            idx = [(self.pos + i) % len(self.anchors) for i in range(min(self.cfg.anchor_batch, len(self.anchors)))]
            self.pos = (self.pos + len(idx)) % len(self.anchors)
            anchor_batch = to_device(collate([self.anchors[i] for i in idx], ctx.tokenizer.pad_token_id), logits.device)
            loss = loss + self.cfg.lam * kl_to_reference(answer_logits(model, anchor_batch)[0],
                                                         torch.cat([self.anchor_ref[i] for i in idx]))
        return loss


def anchor_examples(model, ctx) -> list:
    """The anchor prompts, each with the base model's greedy answer, encoded for training-style batches."""
    from ..evaluate import generate_answers

    prompts = [Example(m, "") for m in anchor_messages()]
    with model.disable_adapter():
        answers = generate_answers(model, ctx.tokenizer, prompts, max_new_tokens=16)
    return [encode(ctx.tokenizer, Example(p.messages, a or "OK"), ctx.config.train.max_length)
            for p, a in zip(prompts, answers, strict=False)]
