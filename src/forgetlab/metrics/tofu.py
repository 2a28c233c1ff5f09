"""Pure TOFU-style unlearning metrics, defined as open-unlearning computes them (so forgetlab's numbers stand beside
the field's): the truth ratio and its two aggregates, forget quality (a two-sample KS test against a reference
model), answer probability, option-normalised probability, model utility (harmonic mean) and ROUGE-L.

Every probability here is length-normalised: an answer's `nll` is its mean negative log-likelihood per answer token
given the question, and its probability is exp(−nll), the geometric mean of the per-token probabilities.

Worked example (three items, three perturbed answers each; nll per token):
    item  correct  perturbed        tr = exp(correct − mean(perturbed))
    1     0.5      1.0, 1.2, 0.8    exp(0.5 − 1.0) = 0.6065   the model prefers the truth
    2     1.0      1.0, 1.0, 1.0    1.0                        indifferent
    3     2.0      1.5, 1.5, 1.5    exp(0.5)       = 1.6487   prefers the false answers
    forget aggregate (closer to 1 is better): mean(min(tr, 1/tr)) = mean(0.6065, 1, 0.6065) = 0.7377
    kept aggregate (retain and other sets):   mean(max(0, 1 − tr)) = mean(0.3935, 0, 0)     = 0.1312
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def truth_ratio(correct_nll: float, wrong_nlls: Sequence[float]) -> float:
    """P(wrong) / P(correct) for one item: P(correct) = exp(−correct_nll) (the paraphrased answer on forget and retain
    sets, the answer itself on others), P(wrong) = exp(−mean of the perturbed answers' nll), the geometric mean of
    their normalised probabilities (as open-unlearning and TOFU's code compute it; the paper's text says the
    arithmetic mean). Below 1: the model prefers the truth."""
    if not wrong_nlls:
        raise ValueError("the truth ratio needs at least one perturbed answer")
    return math.exp(-sum(wrong_nlls) / len(wrong_nlls)) / (math.exp(-correct_nll) + 1e-10)  # 1e-10: as theirs


def truth_ratio_forget(ratios: Sequence[float]) -> float:
    """The forget set's aggregate: mean of min(tr, 1/tr), in (0, 1]; 1 = the model cannot tell true from false."""
    return sum(min(r, 1 / (r + 1e-10)) for r in ratios) / len(ratios)


def truth_ratio_kept(ratios: Sequence[float]) -> float:
    """The aggregate of a set the model should still know: mean of max(0, 1 − tr), in [0, 1); higher = prefers the
    truth more."""
    return sum(max(0.0, 1 - r) for r in ratios) / len(ratios)


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """The two-sided two-sample Kolmogorov–Smirnov statistic D and its p-value (scipy's, exact for these sizes)."""
    from scipy import stats

    result = stats.ks_2samp(list(a), list(b))
    return float(result.statistic), float(result.pvalue)


def forget_quality(ratios: Sequence[float], reference_ratios: Sequence[float]) -> float:
    """TOFU's forget quality: the p-value of a KS test between the per-item truth ratios of the unlearned model and
    those of a reference model that never saw the forget set, on the same forget items. 1: the two distributions
    cannot be told apart; small: the unlearned model still behaves unlike the reference (read on a log scale)."""
    return ks_2samp(ratios, reference_ratios)[1]


def probability(nll: float) -> float:
    """An answer's length-normalised probability given its question: exp(−mean token nll)."""
    return math.exp(-nll)


def normalised_probability(correct_nll: float, wrong_nlls: Sequence[float]) -> float:
    """P(correct) / (P(correct) + Σ P(wrong)), every P length-normalised: the probability score of sets with
    perturbed options (TOFU's real authors and world facts)."""
    p = probability(correct_nll)
    return p / (p + sum(probability(w) for w in wrong_nlls))


def model_utility(values: Sequence[float | None]) -> float:
    """Harmonic mean of the utility numbers that are there (None: not measured here), 0 where any is 0. TOFU's has
    nine: probability, ROUGE-L recall and the kept truth ratio on each of retain, real authors and world facts."""
    xs = [v for v in values if v is not None]
    if not xs:
        raise ValueError("model utility needs at least one value")
    if any(v < 0 for v in xs):
        raise ValueError(f"model utility: negative values {[v for v in xs if v < 0]}")
    return 0.0 if any(v == 0 for v in xs) else len(xs) / sum(1 / v for v in xs)


_scorer = None


def rouge_l(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-L of a generated answer against the reference by the `rouge-score` package, stemmer on (as
    open-unlearning scores TOFU): recall (TOFU's number), precision and F1 (MUSE's)."""
    global _scorer
    if _scorer is None:
        from rouge_score import rouge_scorer

        _scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    s = _scorer.score(reference, prediction)["rougeL"]
    return {"recall": s.recall, "precision": s.precision, "f1": s.fmeasure}
