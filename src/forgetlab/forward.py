"""The teacher-forced per-row pass: rows (encoded prompt + answer) through the model in batches, one value per row
back in the rows' order. Every cached reference (NPO's log-likelihoods, RMU's hidden states, KL anchors and top-k
references), MCQ option log-likelihoods, the online gate's key margins and token agreement, and the gated
strategy's gate means go through `per_row`, so batching, padding, eval mode and no-grad are decided here once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .batching import Encoded, answer_positions, collate, to_device


def per_row(model, rows: list[Encoded], pad_id: int, fn: Callable[[Any, dict, list[Encoded]], list],
            batch_size: int = 16, by_length: bool = False) -> list:
    """`fn(model, batch, chunk)` on each batch of rows (collated, on the model's device) gives one value per row of
    the chunk; the values come back in `rows`' order. Eval mode and no gradients while it runs (the training mode is
    restored); `by_length` batches rows of similar length together, so little is padded."""
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].input_ids)) if by_length else list(range(len(rows)))
    out: list = [None] * len(rows)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                chunk = [rows[i] for i in idx]
                for i, value in zip(idx, fn(model, to_device(collate(chunk, pad_id), device), chunk), strict=True):
                    out[i] = value
    finally:
        model.train(was_training)
    return out


def by_row(values: torch.Tensor, chunk: list[Encoded]) -> list[torch.Tensor]:
    """Values at the answer tokens of a batch, (n_answer_tokens, ...), split into one tensor per row."""
    return list(values.split([answer_positions([r]) for r in chunk]))
