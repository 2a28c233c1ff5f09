"""Stability, plasticity and forgetting of an online learner, measured every `metrics_every` turns.

- stability: KL(p_start || p) and perplexity of the starting model's answers on the 32 anchor prompts; drift = the
  standard deviation of that perplexity over the measurements so far;
- plasticity: over the last 10 fact updates, the mean final loss, the mean relative improvement
  (first − last) / first, and the adaptation speed (mean steps an update took);
- forgetting: control performance (share of the general questions the starting model answered right that are still
  answered right), its regression from the start (1.0 by construction), and the forgetting rate (regression per
  learned turn);
- facts stored / learned (own question answered after the update) / rejected (undone by the gate).
The maths of the summary numbers is pure (`plasticity`, `drift`); this module's `measure` runs the forward passes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..batching import collate, to_device
from ..evaluate import general_score
from ..losses import answer_logits, kl_to_reference
from ..metrics.qa import contains

RECENT = 10


def plasticity(updates: list[dict]) -> dict:
    """Summary of the last `RECENT` fact updates (dicts with steps, first_loss, last_loss).

    >>> plasticity([{"steps": 4, "first_loss": 2.0, "last_loss": 0.5}, {"steps": 2, "first_loss": 1.0, "last_loss": 0.5}])
    {'recent_loss': 0.5, 'relative_improvement': 0.625, 'adaptation_steps': 3.0}
    """
    recent = [u for u in updates if u["steps"] and u["first_loss"] > 0][-RECENT:]
    if not recent:
        return {"recent_loss": None, "relative_improvement": None, "adaptation_steps": None}
    n = len(recent)
    return {"recent_loss": sum(u["last_loss"] for u in recent) / n,
            "relative_improvement": sum((u["first_loss"] - u["last_loss"]) / u["first_loss"] for u in recent) / n,
            "adaptation_steps": sum(u["steps"] for u in recent) / n}


def drift(values: list[float]) -> float:
    """Population standard deviation of the perplexities measured so far (0 for fewer than two).

    >>> drift([1.0, 3.0])
    1.0
    """
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@torch.no_grad()
def anchor_stability(model, anchors, pad_id: int, batch_size: int = 8) -> tuple[float, float]:
    """(mean KL to the starting model, perplexity of its answers) over every anchor prompt."""
    device = next(model.parameters()).device
    kls, nll_sum, count = [], 0.0, 0
    for start in range(0, len(anchors.examples), batch_size):
        idx = list(range(start, min(start + batch_size, len(anchors.examples))))
        batch = to_device(collate([anchors.examples[i] for i in idx], pad_id), device)
        logits, targets = answer_logits(model, batch)
        kls.append(float(kl_to_reference(logits, torch.cat([anchors.refs[i] for i in idx]).to(device))) * len(targets))
        nll_sum += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
        count += len(targets)
    return sum(kls) / max(1, count), math.exp(nll_sum / max(1, count))


def measure(learner, turn: int) -> dict:
    """Every metric above for `learner` now (call under the holder's lock)."""
    model, tok = learner.model, learner.tok
    model.eval()
    kl, ppl = anchor_stability(model, learner.anchors, tok.pad_token_id)
    general = learner.controls + learner.locality
    answers = learner.generate(general, learner.cfg.gate.check_tokens) if general else []
    control = sum(contains(a, ex.target) for a, ex in zip(answers, general, strict=True)) / len(general) \
        if general else None
    ppls = [m["anchor_perplexity"] for m in learner.state.metrics_history()] + [ppl]
    facts = learner.memory.all()
    learned = max(1, learner.state.learned_turns)
    return {"turn": turn, "kl_to_start": kl, "anchor_perplexity": ppl, "perplexity_drift": drift(ppls),
            **plasticity([u for u in learner.state.updates_history() if u["kind"] == "fact"]),
            "control": control, "regression": None if control is None else 1.0 - control,
            "forgetting_rate": None if control is None else (1.0 - control) / learned,
            "general": general_score(model, tok, learner.cfg.general, learner.generate)
            if learner.cfg.general.enabled else None,
            "facts_stored": len(facts), "facts_learned": sum(f["learned"] for f in facts),
            "updates_rejected": learner.state.rejected}
