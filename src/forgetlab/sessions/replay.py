"""The loss a session trains with: earlier sessions' records replayed in every batch, and optionally a KL anchor to
what the base model says on everyday prompts.

Replay: old records are added so that they make up a fixed share of each batch, drawn by a generator seeded with
(seed, batch number), so a session resumed from an epoch checkpoint draws exactly what the uninterrupted one would.
Anchor: λ·KL(p_base || p) at the answer tokens of built-in everyday prompts (`data.general.ANCHORS`, disjoint from
the general questions retention is measured on), answered once by the base model; four prompts per batch, rotating
with the batch number.
"""

from __future__ import annotations

import random

import torch

from ..batching import Encoded, collate, encode, old_count, to_device, unbatch
from ..data.general import anchor_messages
from ..data.records import Example
from ..losses import answer_logits, kl_to_reference, nll

ANCHORS_PER_BATCH = 4


class SessionLoss:
    """The loop's method object: answer-token NLL on the batch plus replayed records, plus the anchor term."""

    def __init__(self, old: list[Encoded], share: float, seed: int, pad_id: int, start_batch: int = 0,
                 anchors: tuple[list[Encoded], list[torch.Tensor]] | None = None, anchor_weight: float = 0.0):
        self.old, self.share, self.seed, self.pad_id = old, share, seed, pad_id
        self.batch_number = start_batch
        self.anchors, self.anchor_ref = anchors if anchors else ([], [])
        self.anchor_weight = anchor_weight

    def mixed(self, batch, number: int):
        k = old_count(batch["input_ids"].shape[0], self.share) if self.old else 0
        if k == 0:
            return batch
        rng = random.Random(self.seed * 1_000_003 + number)
        rows = unbatch(batch) + [self.old[rng.randrange(len(self.old))] for _ in range(k)]
        return {key: v.to(batch["input_ids"].device) for key, v in collate(rows, self.pad_id).items()}

    def loss(self, model, batch, ctx):
        number, self.batch_number = self.batch_number, self.batch_number + 1
        loss = nll(model, self.mixed(batch, number))
        if self.anchor_weight > 0 and self.anchors:
            n = len(self.anchors)
            idx = [(number * ANCHORS_PER_BATCH + i) % n for i in range(min(ANCHORS_PER_BATCH, n))]
            anchor_batch = to_device(collate([self.anchors[i] for i in idx], self.pad_id), batch["input_ids"].device)
            ref = torch.cat([self.anchor_ref[i] for i in idx]).to(batch["input_ids"].device)
            loss = loss + self.anchor_weight * kl_to_reference(answer_logits(model, anchor_batch)[0], ref)
        return loss


@torch.no_grad()
def base_anchors(base, tok, max_length: int) -> tuple[list[Encoded], list[torch.Tensor]]:
    """The anchor prompts with the base model's greedy answers, and its logits at those answers' tokens."""
    from ..evaluate import generate_answers

    prompts = [Example(m, "") for m in anchor_messages()]
    answers = generate_answers(base, tok, prompts, max_new_tokens=16)
    encoded = [encode(tok, Example(p.messages, a or "OK"), max_length) for p, a in zip(prompts, answers, strict=True)]
    device = next(base.parameters()).device
    refs = [answer_logits(base, to_device(collate([e], tok.pad_token_id), device))[0].float().cpu() for e in encoded]
    return encoded, refs
