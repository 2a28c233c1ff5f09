"""The loss a session trains with, from the shared pieces in `retain.py`:

    NLL(new rows + replayed rows) + distill · KL(p_previous || p) on the replayed rows
    + anchor · KL(p_base || p) on four of the 32 built-in anchor prompts (everyday requests and short questions)

Replay: `per_batch` earlier rows are added to every batch. They are taken in turn from a seeded permutation of the
old rows (a fresh permutation each time the old rows run out), so every old row is seen equally often, and batch b
draws the same rows whether or not the session was resumed from an epoch checkpoint. The NLL is one mean over new
and replayed answer tokens, so with half of each batch replayed the new rows get half the gradient they would get
alone. Later sessions do learn their own facts less well than the first (library recall 0.41 as session 3, 0.64 as
session 1), but a separate mean for each part, tried, made it worse: housing recall unchanged (0.50), cs recall
after session 2 down from 0.50 to 0.36 and general answers from 25 to 23 of 28.
Distillation: the previous session's model is this model with the new adapter scaled to zero (no copy); its
next-token distributions at the old rows' answers are kept, so what it knew around those answers is kept too. They
are computed once per old row before training and kept as their 64 most likely tokens (`retain.TopKReference`):
each old row is replayed about five times in a session, so this saves four of five reference passes.
Anchors: the base model's answers and logits on the anchor prompts, computed once before training (from the base
model as it loads, before earlier sessions are applied). The short questions among them matter: without them the
question-answer training pulled the model's style on every short question (measured: 21/28 general answers kept
after one session instead of 26/28).
"""

from __future__ import annotations

import random

import torch.nn.functional as F

from ..batching import Encoded, answer_positions
from ..losses import answer_logits
from ..retain import Anchors, TopKReference, with_rows

ANCHORS_PER_BATCH = 4


def replay_indices(n_old: int, per_batch: int, number: int, seed: int) -> list[int]:
    """Indices of the old rows batch `number` carries: positions number·per_batch ... of an endless sequence of
    seeded permutations of range(n_old), so each old row comes round once per n_old / per_batch batches."""
    orders: dict[int, list[int]] = {}  # one permutation per pass over the old rows
    out = []
    for pos in range(number * per_batch, (number + 1) * per_batch):
        cycle, i = divmod(pos, n_old)
        if cycle not in orders:
            orders[cycle] = list(range(n_old))
            random.Random(seed * 1_000_003 + cycle).shuffle(orders[cycle])
        out.append(orders[cycle][i])
    return out


class SessionLoss:
    """The loop's method object for a session (see the module docstring)."""

    def __init__(self, old: list[Encoded], per_batch: int, seed: int, pad_id: int, *, start_batch: int = 0,
                 distill: float = 0.0, previous: TopKReference | None = None, anchors: Anchors | None = None,
                 anchor_weight: float = 0.0):
        """`previous`: the previous session's distributions at the old rows (needed when distill > 0)."""
        self.old, self.per_batch, self.seed, self.pad_id = old, per_batch if old else 0, seed, pad_id
        self.batch_number = start_batch
        self.distill, self.previous, self.anchors, self.anchor_weight = distill, previous, anchors, anchor_weight

    def replayed(self, number: int) -> list[int]:
        """Indices of the old rows batch `number` carries."""
        if not self.per_batch:
            return []
        return replay_indices(len(self.old), self.per_batch, number, self.seed)

    def loss(self, model, batch, ctx):
        number, self.batch_number = self.batch_number, self.batch_number + 1
        idx = self.replayed(number)
        rows = [self.old[i] for i in idx]
        # padded, not packed: packing draws other LoRA dropout masks, and on the FAQ files it cost cs recall after
        # session 2 (0.50 padded, 0.41 packed)
        logits, targets = answer_logits(model, with_rows(batch, rows, self.pad_id))
        loss = F.cross_entropy(logits.float(), targets)  # one mean over new and replayed answer tokens
        if self.distill > 0 and rows:
            loss = loss + self.distill * self.previous.kl(logits[logits.shape[0] - answer_positions(rows):], idx)
        if self.anchor_weight > 0 and self.anchors:
            loss = loss + self.anchor_weight * self.anchors.kl(model, number, ANCHORS_PER_BATCH, self.pad_id)
        return loss
