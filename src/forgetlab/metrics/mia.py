"""Pure membership-inference and memorisation metrics, defined as open-unlearning computes them: min-k% and
min-k%++ scores, the AUC between forget (members) and holdout (non-members) texts, MUSE's privacy leakage against a
reference model; and exact memorisation / extraction strength of teacher-forced predictions (extraction strength
by its definition: 0 where no suffix is right, where open-unlearning's loop gives 1/N).

Scores are loss-like, as in open-unlearning: higher = less likely the text was trained on. Worked example (k 0.4):
token log-probs [−0.1, −2.0, −0.5, −3.0, −0.2] → the lowest int(5 × 0.4) = 2 are −3.0 and −2.0 → min-k = 2.5.
Forget scores [1, 2, 3], holdout [2.5, 3.5, 4.0]: 8 of the 9 (holdout, forget) pairs have the holdout score higher,
AUC = 8/9 = 0.889 (the forget texts look memorised). Privacy leakage with a reference AUC of 0.55:
((1 − 0.889) − (1 − 0.55)) / (1 − 0.55) × 100 = −75.3: far below 0, the unlearned model still treats its forget set as
seen; 0 is the reference's own behaviour; above 0, it avoids the forget set more than a model that never saw it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _lowest_mean(values: Sequence[float], k: float) -> float:
    if not values:
        return 0.0
    n = max(1, int(len(values) * k))
    return sum(sorted(values)[:n]) / n


def min_k(token_logprobs: Sequence[float], k: float = 0.4) -> float:
    """Min-k% (Shi et al., 2024): −(mean of the lowest k share of the text's token log-probs), at least one token;
    0 for a text with no scored token."""
    return -_lowest_mean(token_logprobs, k)


def min_k_plus_plus(token_logprobs: Sequence[float], means: Sequence[float], variances: Sequence[float],
                    k: float = 0.4) -> float:
    """Min-k%++ (Zhang et al., 2025): each token's log-prob standardised by the mean μ and variance σ² of the log-prob
    under the model's own next-token distribution at that position (μ = Σ p log p, σ² = Σ p (log p)² − μ²; σ² at
    least 1e-6), then −(mean of the lowest k share)."""
    z = [(lp - mu) / math.sqrt(max(var, 1e-6)) for lp, mu, var in zip(token_logprobs, means, variances, strict=True)]
    return -_lowest_mean(z, k)


def auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """ROC AUC with members (the forget texts) labelled 0 and non-members (holdout) 1, on loss-like scores: the
    chance that a non-member scores above a member, ties counting half. 1: the forget texts are told apart as
    seen; 0.5: indistinguishable."""
    if not member_scores or not nonmember_scores:
        raise ValueError("the AUC needs member and non-member scores")
    wins = sum((h > f) + 0.5 * (h == f) for h in nonmember_scores for f in member_scores)
    return wins / (len(member_scores) * len(nonmember_scores))


def privleak(auc_unlearned: float, auc_reference: float) -> float:
    """MUSE's privacy leakage in percent: the relative difference of (1 − AUC) between the unlearned model and a
    reference that never saw the forget set. Near 0 is the goal; negative: under-unlearned; positive: over-."""
    return ((1 - auc_unlearned) - (1 - auc_reference)) / (1 - auc_reference + 1e-10) * 100  # 1e-10: as open-unlearning


def exact_memorisation(predicted: Sequence[int], target: Sequence[int]) -> float | None:
    """Share of target tokens that the teacher-forced argmax predicts (None for no tokens)."""
    if not target:
        return None
    return sum(p == t for p, t in zip(predicted, target, strict=True)) / len(target)


def extraction_strength(predicted: Sequence[int], target: Sequence[int]) -> float:
    """1 − k/N with k the smallest index from which every teacher-forced prediction is right (the longest right
    suffix); 0 where even the last token is wrong or there are no tokens. (open-unlearning's loop gives 1/N in that
    last case; here it is 0, the definition's value.)"""
    n = len(target)
    k = n
    while k > 0 and predicted[k - 1] == target[k - 1]:
        k -= 1
    return 1 - k / n if n else 0.0
