"""The field's unlearning metrics (metrics/tofu.py, metrics/mia.py) on numbers computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from forgetlab.metrics import mia, tofu


def test_truth_ratio_and_its_two_aggregates_by_hand():
    # the module's example: per-token nll of the correct answer and of three perturbed ones
    ratios = [tofu.truth_ratio(0.5, [1.0, 1.2, 0.8]), tofu.truth_ratio(1.0, [1.0, 1.0, 1.0]),
              tofu.truth_ratio(2.0, [1.5, 1.5, 1.5])]
    assert ratios == pytest.approx([math.exp(-0.5), 1.0, math.exp(0.5)])
    assert ratios[0] == pytest.approx(0.60653, abs=1e-5)
    assert tofu.truth_ratio_forget(ratios) == pytest.approx((0.60653 + 1 + 0.60653) / 3, abs=1e-5)  # 0.73769
    assert tofu.truth_ratio_kept(ratios) == pytest.approx((1 - 0.60653) / 3, abs=1e-5)  # 0.13116
    # the geometric mean over perturbed answers (the code's), not the arithmetic mean (the paper's text)
    arithmetic = sum(math.exp(-x) for x in (1.0, 1.2, 0.8)) / 3
    assert arithmetic / math.exp(-0.5) > ratios[0]
    with pytest.raises(ValueError):
        tofu.truth_ratio(0.5, [])


def test_forget_quality_is_the_ks_p_value_by_hand():
    # D = 0.4: at x = 0.5 the unlearned sample has 2 of 5 at or below, the reference 0 of 5
    d, p = tofu.ks_2samp([0.2, 0.5, 0.9, 1.1, 3.0], [0.6, 0.8, 1.0, 1.2, 1.5])
    assert d == pytest.approx(0.4) and p == pytest.approx(0.873016, abs=1e-6)
    # wholly apart: the exact two-sided p-value is 2 / C(10, 5) = 2 / 252
    assert tofu.forget_quality([0.05, 0.1, 0.15, 0.2, 0.25], [0.6, 0.8, 1.0, 1.2, 1.5]) == pytest.approx(2 / 252)
    # KS depends only on the order, so 1/tr gives the same numbers (TOFU's code tests 1/tr, open-unlearning tr)
    a, b = [0.2, 0.5, 0.9, 1.1, 3.0], [0.6, 0.8, 1.0, 1.2, 1.5]
    assert tofu.ks_2samp([1 / x for x in a], [1 / x for x in b]) == pytest.approx((d, p))
    assert tofu.forget_quality(b, b) == pytest.approx(1.0)


def test_probabilities_and_model_utility_by_hand():
    assert tofu.probability(0.3) == pytest.approx(0.740818, abs=1e-6)
    expected = math.exp(-0.3) / (math.exp(-0.3) + math.exp(-1) + math.exp(-2) + math.exp(-3))
    assert tofu.normalised_probability(0.3, [1, 2, 3]) == pytest.approx(expected) == pytest.approx(0.572582, abs=1e-6)
    nine = [0.9, 0.6, 0.5, 0.45, 0.9, 0.6, 0.85, 0.88, 0.55]
    assert tofu.model_utility(nine) == pytest.approx(9 / sum(1 / v for v in nine)) == pytest.approx(0.647073, abs=1e-6)
    assert tofu.model_utility([0.5, None, 1.0]) == pytest.approx(2 / (2 + 1))  # what is measured here
    assert tofu.model_utility([0.9, 0.0, 0.8]) == 0.0
    with pytest.raises(ValueError):
        tofu.model_utility([None])


def test_rouge_l_by_hand():
    # tokens: lower case, punctuation dropped; LCS "was born in paris" = 4, reference 8 tokens, answer 5
    s = tofu.rouge_l("He was born in Paris.", "The author was born in Paris in 1960.")
    assert s["recall"] == pytest.approx(4 / 8) and s["precision"] == pytest.approx(4 / 5)
    assert s["f1"] == pytest.approx(2 * 0.5 * 0.8 / 1.3)
    # the stemmer is on: "novels" and "novel" are one token (LCS he, novel = 2 of 3 and 4)
    assert tofu.rouge_l("He wrote a novel", "He writes novels")["f1"] == pytest.approx(2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3))
    assert tofu.rouge_l("", "Paris")["recall"] == 0.0


def test_min_k_and_min_k_plus_plus_by_hand():
    assert mia.min_k([-0.1, -2.0, -0.5, -3.0, -0.2], k=0.4) == pytest.approx(2.5)
    assert mia.min_k([-0.7], k=0.4) == pytest.approx(0.7)  # at least one token
    assert mia.min_k([]) == 0.0
    # one position, the model's next-token distribution [0.7, 0.2, 0.1], the text's token the second
    probs = [0.7, 0.2, 0.1]
    mu = sum(p * math.log(p) for p in probs)
    var = sum(p * math.log(p) ** 2 for p in probs) - mu ** 2
    assert mu == pytest.approx(-0.801819, abs=1e-6) and var == pytest.approx(0.494387, abs=1e-6)
    assert mia.min_k_plus_plus([math.log(0.2)], [mu], [var]) == pytest.approx(1.148612, abs=1e-6)
    # two positions, k 0.5: the lower z of the two
    z = [(math.log(0.2) - mu) / math.sqrt(var), (math.log(0.7) - mu) / math.sqrt(var)]
    assert mia.min_k_plus_plus([math.log(0.2), math.log(0.7)], [mu, mu], [var, var], k=0.5) == pytest.approx(-min(z))


def test_auc_and_privleak_by_hand():
    assert mia.auc([1, 2, 3], [2.5, 3.5, 4.0]) == pytest.approx(8 / 9)
    assert mia.auc([1, 2], [2, 1]) == pytest.approx(0.5)  # ties count half: (0.5 + 1 + 0 + 0.5) / 4
    assert mia.auc([5, 6], [1, 2]) == 0.0
    assert mia.privleak(8 / 9, 0.5) == pytest.approx((1 / 9 - 0.5) / 0.5 * 100) == pytest.approx(-77.78, abs=0.01)
    assert mia.privleak(8 / 9, 0.55) == pytest.approx(-75.31, abs=0.01)
    assert mia.privleak(0.55, 0.55) == 0.0
    assert mia.privleak(0.9, 1.0) == pytest.approx(0.1 / 1e-10 * 100)  # a perfect reference: finite, as theirs
    with pytest.raises(ValueError):
        mia.auc([], [1.0])


def test_exact_memorisation_and_extraction_strength_by_hand():
    assert mia.exact_memorisation([9, 2, 3, 4], [1, 2, 3, 4]) == 0.75
    assert mia.extraction_strength([9, 2, 3, 4], [1, 2, 3, 4]) == 0.75  # the right suffix starts at index 1
    assert mia.extraction_strength([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert mia.extraction_strength([1, 2, 3, 9], [1, 2, 3, 4]) == 0.0  # the last token wrong: nothing extracted
    assert mia.exact_memorisation([], []) is None and mia.extraction_strength([], []) == 0.0


def test_the_model_side_matches_a_forward_pass_read_by_hand(tiny, tokenizer):
    """answer_nlls and token_statistics (evaluate.py) against the full logits of one unbatched forward pass."""
    from forgetlab.batching import IGNORE
    from forgetlab.evaluate import answer_nlls, argmax_tokens, qa_rows, token_statistics

    model, tok = tiny, tokenizer
    rows = qa_rows(tok, [("Who wrote Hamlet?", "William Shakespeare"), ("What is 2 + 2?", "four"),
                         ("Name a colour of the sky on a clear day at noon", "blue")])
    nlls, stats = answer_nlls(model, tok, rows), token_statistics(model, tok, rows)
    dropped = token_statistics(model, tok, rows[:1], drop_last=True)
    for row, n, st in zip(rows, nlls, stats, strict=True):
        with torch.no_grad():
            logp = model(torch.tensor([row.input_ids])).logits[0, :-1].float().log_softmax(-1)
        where = [i for i, lab in enumerate(row.labels[1:]) if lab != IGNORE]
        targets = [row.labels[1:][i] for i in where]
        token = [float(logp[i, t]) for i, t in zip(where, targets, strict=True)]
        assert n == pytest.approx(-sum(token) / len(token), abs=1e-5)
        assert st["logprob"] == pytest.approx(token, abs=1e-5) and st["target"] == targets
        p = logp[where].exp()
        mean = (p * logp[where]).sum(-1)
        assert st["mean"] == pytest.approx(mean.tolist(), abs=1e-5)
        assert st["var"] == pytest.approx(((p * logp[where] ** 2).sum(-1) - mean ** 2).tolist(), abs=1e-4)
        assert all(v >= -1e-6 for v in st["var"])
    assert [s["predicted"] for s in stats] == argmax_tokens(model, tok, rows)
    assert dropped[0]["target"] == stats[0]["target"][:-1]  # the end-of-turn token left out
    # the score functions take them as they come
    assert mia.min_k(stats[0]["logprob"]) > 0 and tofu.probability(nlls[0]) < 1
