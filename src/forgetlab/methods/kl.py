"""`kl`: self-distillation. The training loss plus λ·KL(p_ref || p_model) of the next-token distributions.

The reference is the base model (`reference: base`, the adapter disabled: no second copy in memory) or the model
as it was at the end of the previous task (`reference: previous`: its adapter weights are kept and swapped in for
the reference forward pass). The KL is taken at the answer tokens of the current batch, at built-in anchor prompts
(everyday questions answered once by the base model, see `retain.Anchors`), or both.

`kl-base` is the variant anchored to the base model on the anchor prompts only (`reference: base, on: anchors`, the
other `strategy.kl` keys apply): it does not hold the earlier tasks' answers, but it keeps the base model's general
answers, which every other strategy here loses at the learning rates that teach new facts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..forward import per_row
from ..losses import answer_logits, kl_to_reference
from ..model import trainable_named
from ..retain import Anchors, anchor_examples, reference_logits


class KL:
    """Self-distillation: KL to the base model or the previous task's model, on the batch and/or anchor prompts."""

    stages = "sequential"
    same_parameters = True

    def __init__(self, settings):
        self.cfg = settings.kl
        self.anchors: Anchors | None = None  # the base model's answers on the anchor prompts, with reference logits
        self.ref_state: dict[str, torch.Tensor] = {}
        self.number = 0

    def before_task(self, model, task, ctx):
        self.number = 0  # each task starts the anchor rotation afresh, so a resumed run rotates the same way
        if self.cfg.reference == "previous":
            self.ref_state = {n: p.detach().clone() for n, p in trainable_named(model)}
        if self.cfg.on != "batch":
            if self.anchors is None or self.cfg.reference == "previous":
                examples = self.anchors.examples if self.anchors else anchor_examples(
                    model, ctx.tokenizer, ctx.train.max_length)
                refs = per_row(model, examples, ctx.tokenizer.pad_token_id,
                               lambda m, b, _: [self.reference_logits(m, b)], batch_size=1)
                self.anchors = Anchors(examples, refs)

    @torch.no_grad()
    def reference_logits(self, model, batch) -> torch.Tensor:
        """The reference model's logits at the batch's answer tokens, (n_answer_tokens, vocab)."""
        if self.cfg.reference == "base":
            return reference_logits(model, batch)
        was_training = model.training
        model.eval()
        try:
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
            loss = loss + self.cfg.lam * self.anchors.kl(model, self.number, self.cfg.anchor_batch,
                                                         ctx.tokenizer.pad_token_id)
            self.number += 1
        return loss


class KLBase(KL):
    """`kl` anchored to the base model on the built-in everyday prompts only: keeps general answers, task after task."""

    def __init__(self, settings):
        super().__init__(settings)
        self.cfg = settings.kl.model_copy(update={"reference": "base", "on": "anchors"})
