"""`method.chat_keys`: forget the answer where the chat says it, not only where the plain text states it.

Every method trains on the facts stated as plain text ("Question: q / Answer: a"), the form option log-likelihood
scores. The model's chat answers can keep a fact that the plain form has lost (words → geography in the README:
option accuracy 1.00 → 0.20 while 16 of 25 chat answers stayed right). Training the whole chat answer away teaches the model to
answer every chat question badly; this term is narrower: for each forget fact whose answer the starting model's own
greedy chat answer holds, only the tokens that spell the answer in it are pushed down, each by unlikelihood
(Welleck et al., 2019) —

    −log(1 − p(answer token | question, the model's own answer before it))

— which is bounded (zero once the token is unlikely, no gradient to run away with) and leaves the words around the
answer alone. The term is added to the wrapped method's loss with weight `method.chat_keys`. Pushing down only the
token where the answer begins was tried: on the tuning sets it needed three times the weight for the same effect
and cost more general answers.

`method.chat_retain` (off by default): the model's own greedy chat answers to the retain questions, generated before
the first step, trained by NLL with that weight — it keeps how the model answers in chat. With the retain weight
raised it let body → nature meet the bar, but did not transfer (science → objects lost it; docs/results.md).
"""

from __future__ import annotations

import torch

from ..batching import IGNORE, Encoded, encode, key_positions
from ..data.records import Example
from ..evaluate import generate_answers
from ..losses import answer_logits, nll
from ..metrics.qa import contains
from . import Cycle


def greedy_answers(model, tok, questions: list[Example], max_new_tokens: int) -> list[str]:
    """`model`'s greedy chat answers to `questions` as it is now (evaluation mode for the call, then as it was)."""
    was = model.training
    model.eval()
    try:
        return generate_answers(model, tok, questions, max_new_tokens, 64)
    finally:
        model.train(was)


def key_rows(model, tok, questions: list[Example], max_new_tokens: int, max_length: int) -> list[Encoded]:
    """One row per question whose greedy chat answer (by `model` as it is now) holds its target: the question and
    that answer, labelled only at the tokens that spell the target within it."""
    answers = greedy_answers(model, tok, questions, max_new_tokens)
    rows = []
    for ex, answer in zip(questions, answers, strict=True):
        pos = key_positions(tok, answer, ex.target) if contains(answer, ex.target) else []
        if not pos:
            continue
        row = encode(tok, Example(ex.messages, answer), max_length)
        start = next(i for i, t in enumerate(row.labels) if t != IGNORE)  # where the answer's tokens begin
        labels = [IGNORE] * len(row.labels)
        for i in pos:
            if start + i < len(labels):
                labels[start + i] = row.labels[start + i]
        if any(t != IGNORE for t in labels):
            rows.append(Encoded(row.input_ids, labels))
    return rows


def unlikelihood(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over labelled positions of −log(1 − p(label)); 0 when nothing is labelled."""
    logits, targets = answer_logits(model, batch)
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    p = logits.float().softmax(-1).gather(1, targets[:, None])[:, 0]
    return -torch.log1p(-p.clamp(max=1 - 1e-6)).mean()


def own_answer_rows(model, tok, questions: list[Example], max_new_tokens: int, max_length: int) -> list[Encoded]:
    """One row per question: the question through the chat template and `model`'s own greedy answer to it (as it
    is now), every answer token labelled — what the chat-retain term keeps the model saying."""
    answers = greedy_answers(model, tok, questions, max_new_tokens)
    return [encode(tok, Example(ex.messages, answer), max_length) for ex, answer in zip(questions, answers, strict=True)
            if answer.strip()]


class ChatKeys:
    """A method with the chat terms added: inner loss + weight · unlikelihood of the forget answers' tokens in the
    model's own chat answers (see the module docstring) + retain_weight · NLL of the model's own chat answers to the
    retain questions. Everything else is the inner method's."""

    def __init__(self, inner, weight: float, rows: list[Encoded], batch_size: int, pad_id: int,
                 retain_weight: float = 0.0, retain_rows: list[Encoded] | None = None):
        self.inner, self.weight, self.retain_weight = inner, weight, retain_weight
        self.keys = Cycle(rows, batch_size, pad_id)
        self.kept = Cycle(retain_rows or [], batch_size, pad_id)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def loss(self, model, batch, ctx):
        loss = self.inner.loss(model, batch, ctx)
        device = next(model.parameters()).device
        keys = self.keys.next(device) if self.weight else None
        if keys is not None:
            loss = loss + self.weight * unlikelihood(model, keys)
        kept = self.kept.next(device) if self.retain_weight else None
        return loss + self.retain_weight * nll(model, kept) if kept is not None else loss


def with_chat_keys(method, model, tok, cfg, forget, state: dict, retain=None):
    """`method` with the chat terms: the chat-answer term when `cfg.method.chat_keys` > 0 (the rows from `forget`'s
    questions, answered by `model` before its first step; their count goes to `state["chat_keys"]`) and the
    chat-retain term when `cfg.method.chat_retain` > 0 (`retain`'s questions, likewise; `state["chat_retain"]`);
    `method` itself when both are off."""
    m = cfg.method
    if not m.chat_keys and not (m.chat_retain and retain is not None):
        return method
    rows = key_rows(model, tok, forget.qa(), cfg.eval.max_new_tokens, cfg.train.max_length) if m.chat_keys else []
    state["chat_keys"] = len(rows)
    kept = []
    if m.chat_retain and retain is not None:
        kept = own_answer_rows(model, tok, retain.qa(), cfg.eval.max_new_tokens, cfg.train.max_length)
        state["chat_retain"] = len(kept)
    return ChatKeys(method, m.chat_keys, rows, cfg.train.batch_size, tok.pad_token_id, m.chat_retain, kept)
