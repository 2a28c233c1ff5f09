"""Shared loss maths used by the loop, the methods and the landscape code."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batching import IGNORE


def unwrap(model):
    """The underlying causal LM (LoRA layers stay injected, so adapters still apply)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def answer_logits(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets at answer tokens only: ((n_answer_tokens, vocab), (n_answer_tokens,)).

    The output projection runs only where a label exists, not over the whole sequence: on a 49k-token
    vocabulary this saves a large share of the compute of a padded prompt-heavy batch.
    """
    lm = unwrap(model)
    hidden = lm.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    logits = lm.get_output_embeddings()(hidden[:, :-1][keep])
    return logits, labels[keep]


def nll(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean negative log-likelihood of the answer tokens (a scalar)."""
    logits, targets = answer_logits(model, batch)
    return F.cross_entropy(logits.float(), targets)
