"""One online update, from the shared pieces: the examples a fact is trained as, the adaptive learning rate, token
importance weights, and the loss the project's loop (`loop.train`) minimises:

    Σ_t w_t · NLL_t / Σ_t w_t  (answer tokens)  +  λ · KL(p_base || p) on `anchors_per_step` anchor prompts

The anchors (`retain.Anchors`) are the assistant's own answers to built-in prompts, computed once with the online
adapter switched off, so the KL is taken against the model the learner started from without a second copy of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..batching import IGNORE, answer_positions, encode, key_positions, unbatch
from ..config.online import UpdateConfig
from ..data.records import Example, user
from ..forward import by_row, per_row
from ..losses import answer_logits, kl_to_reference
from ..retain import Anchors, with_rows
from .edits import EDIT

ACK = "I understand. "


def fact_examples(fact: dict, cfg: UpdateConfig) -> list[Example]:
    """What a fact is trained as: its first `cfg.forms` question forms (second-person answers), and the statement
    answered "I understand. <the fact in the second person>" (the statement itself when no forms are trained). An
    edit is trained as each of its prompts with the new answer, through the chat template and as plain text
    (`prompt answer`, the form the editing metrics read)."""
    if fact["pattern"] == EDIT:  # an edit: each of its prompts through the chat template and as plain text
        return [Example(user(q), a, {"kind": "form", "plain": plain}) for q, a in fact["forms"]
                for plain in (False, True)]
    forms = [tuple(f) for f in fact["forms"]][:cfg.forms]
    out = [Example(user(q), a, {"kind": "form"}) for q, a in forms]
    if cfg.statement:
        told = fact["forms"][0][1] if cfg.forms and fact["forms"] else fact["statement"]
        out.append(Example(user(fact["statement"]), ACK + told, {"kind": "statement"}))
    return out


def adaptive_lr(cfg: UpdateConfig, context: str, times_seen: int = 1) -> float:
    """lr × the context's multiplier (chat / question / fact / replay) × (1 + repetition_boost × (times_seen − 1)),
    kept within [lr_floor, lr_cap]; 0 when the context's multiplier is 0 (nothing to learn).

    >>> adaptive_lr(UpdateConfig(lr=1e-3, fact_multiplier=2.0, repetition_boost=0.5), "fact", times_seen=3)
    0.004
    """
    mult = {"chat": cfg.chat_multiplier, "question": cfg.question_multiplier, "fact": cfg.fact_multiplier,
            "replay": cfg.replay_multiplier}[context]
    if mult == 0:
        return 0.0
    lr = cfg.lr * mult * (1 + cfg.repetition_boost * (max(1, times_seen) - 1))
    return round(min(cfg.lr_cap, max(cfg.lr_floor, lr)), 12)


def entity_token_ids(tok, texts: list[str]) -> set[int]:
    """Token ids of `texts` as they appear mid-sentence and at the start (BPE splits " Oriel" and "Oriel" apart)."""
    ids: set[int] = set()
    for t in texts:
        if t.strip():
            ids.update(tok(" " + t.strip(), add_special_tokens=False)["input_ids"])
            ids.update(tok(t.strip(), add_special_tokens=False)["input_ids"])
    return ids


def token_weights(answer: list[int], entity_ids: set[int], cfg: UpdateConfig) -> list[float]:
    """Importance of each answer token: 1, plus entity_weight on the fact's value tokens, plus edge_weight on the
    first and last `edge_tokens` tokens; times repeat_factor for a token that occurs more than once in the answer.

    >>> token_weights([5, 7, 7, 9], {9}, UpdateConfig(entity_weight=2.0, edge_weight=0.5, repeat_factor=0.5))
    [1.5, 0.5, 0.5, 3.5]
    """
    out, k = [], cfg.edge_tokens
    for i, t in enumerate(answer):
        edge = i < k or i >= len(answer) - k
        w = 1.0 + (cfg.entity_weight if t in entity_ids else 0.0) + (cfg.edge_weight if edge else 0.0)
        out.append(w * (cfg.repeat_factor if answer.count(t) > 1 else 1.0))
    return out


class OnlineLoss:
    """The loop's method object for one update (see the module docstring). `last_nll`: the plain mean answer-token
    NLL of the last step, what early stopping reads."""

    def __init__(self, cfg: UpdateConfig, anchors: Anchors | None, kl_weight: float, entity_ids: set[int],
                 pad_id: int, start: int = 0, starting=None, below=None):
        self.cfg, self.anchors, self.kl_weight, self.entity_ids, self.pad_id = cfg, anchors, kl_weight, entity_ids, pad_id
        self.starting = starting  # a context in which the model is the starting one (update.kl_text's reference)
        self.below = below  # the kept states under the trained layers (below.Below), or None
        self.number = start
        self.last_nll = float("inf")

    def weights(self, rows) -> torch.Tensor:
        """Token weights in the order `answer_logits` returns answer positions (row by row)."""
        answers = [[int(t) for t in r.labels[1:] if t != IGNORE] for r in rows]
        return torch.tensor([w for a in answers for w in token_weights(a, self.entity_ids, self.cfg)])

    def loss(self, model, batch, ctx):
        use = self.kl_weight > 0 and self.anchors and self.cfg.anchors_per_step
        idx = self.anchors.indices(self.number, self.cfg.anchors_per_step) if use else []
        extra = [self.anchors.examples[i] for i in idx]
        logits, targets = answer_logits(model, with_rows(batch, extra, self.pad_id, model), self.below)  # one pass
        n = logits.shape[0] - answer_positions(extra)
        nll = F.cross_entropy(logits[:n].float(), targets[:n], reduction="none")
        w = self.weights(unbatch(batch)).to(nll.device)
        self.last_nll = float(nll.detach().mean())
        loss = (w * nll).sum() / w.sum()
        if extra:
            ref = torch.cat([self.anchors.refs[i] for i in idx]).to(logits.device)
            loss = loss + self.kl_weight * kl_to_reference(logits[n:], ref)
        if self.cfg.kl_text and self.starting is not None:
            with torch.no_grad(), self.starting():
                ref, _ = answer_logits(model, batch)
            loss = loss + self.cfg.kl_text * kl_to_reference(logits[:n], ref.float())
        self.number += 1
        return loss


@torch.no_grad()
def key_margins(model, tok, rows: list[tuple[Example, str]], below=None) -> list[float]:
    """For each (question with an answer, key): the smallest margin, over the key's tokens, by which the model
    predicts that token given the question and the answer before it (its logit minus the best other token's).
    Positive: greedy decoding would say the key here; −inf when the key is not in the answer. One batched
    teacher-forced pass (`below`: the learner's kept states under its trained layers, see below.py)."""
    if not rows:
        return []
    encoded = [encode(tok, ex, 512) for ex, _ in rows]

    def margins(m, batch, chunk):
        logits, targets = answer_logits(m, batch, below)
        logits = logits.float()
        right = logits.gather(1, targets[:, None])[:, 0]
        return by_row(right - logits.scatter(1, targets[:, None], float("-inf")).max(-1).values, chunk)

    out = []
    for (ex, key), margin in zip(rows, per_row(model, encoded, tok.pad_token_id, margins, len(encoded)), strict=True):
        pos = [i for i in key_positions(tok, ex.target, key) if i < len(margin)]
        out.append(min(float(margin[i]) for i in pos) if pos else float("-inf"))
    return out


def key_predicted(model, tok, rows: list[tuple[Example, str]], below=None) -> list[bool]:
    """For each (question with an answer, key): does the model, given the question and the answer up to each of the
    key's tokens, predict that token (argmax)? False when the key is not in the answer."""
    return [m > 0 for m in key_margins(model, tok, rows, below)]
