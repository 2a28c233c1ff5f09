"""Continual metrics and QA scoring against hand-computed values."""

import math

import numpy as np
import pytest

from forgetlab.metrics.continual import average_accuracy, bwt, forgetting, fwt, plasticity, summary
from forgetlab.metrics.qa import contains, exact_match, normalize

TWO = [[0.25, 0.30],
       [0.80, 0.35],
       [0.50, 0.90]]

THREE = [[0.2, 0.3, 0.1],
         [0.9, 0.4, 0.2],
         [0.6, 0.8, 0.3],
         [0.7, 0.5, 0.9]]


def test_docstring_example():
    assert average_accuracy(TWO) == pytest.approx(0.70)
    assert bwt(TWO) == pytest.approx(-0.30)
    f = forgetting(TWO)
    assert f[0] == pytest.approx(0.30) and math.isnan(f[1])
    assert fwt(TWO) == pytest.approx(0.05)
    assert plasticity(TWO) == pytest.approx(0.85)


def test_three_tasks_by_hand():
    # BWT: ((0.7-0.9) + (0.5-0.8)) / 2 = -0.25
    assert bwt(THREE) == pytest.approx(-0.25)
    # forgetting task 1: max(0.9, 0.6) - 0.7 = 0.2; task 2: max(0.4, 0.8) - 0.5 = 0.3
    np.testing.assert_allclose(forgetting(THREE)[:2], [0.2, 0.3])
    # FWT: ((0.4-0.3) + (0.3-0.1)) / 2 = 0.15
    assert fwt(THREE) == pytest.approx(0.15)
    assert average_accuracy(THREE) == pytest.approx((0.7 + 0.5 + 0.9) / 3)
    assert plasticity(THREE) == pytest.approx((0.9 + 0.8 + 0.9) / 3)
    assert summary(THREE)["bwt"] == pytest.approx(-0.25)


def test_single_task_and_bad_shape():
    assert math.isnan(bwt([[0.1], [0.9]])) and math.isnan(fwt([[0.1], [0.9]]))
    with pytest.raises(ValueError):
        bwt([[0.1, 0.2], [0.3, 0.4]])


@pytest.mark.parametrize("pred,ref,em,cont", [
    ("Tarnby.", "tarnby", 1.0, 1.0),
    ("She lives in Tarnby, near the sea.", "Tarnby", 0.0, 1.0),
    ("The ferret", "a ferret", 1.0, 1.0),
    ("Tarnbyshire", "Tarnby", 0.0, 0.0),
    ("", "Tarnby", 0.0, 0.0),
])
def test_qa_scores(pred, ref, em, cont):
    assert exact_match(pred, ref) == em
    assert contains(pred, ref) == cont


def test_normalize():
    assert normalize("  The  Ferret! ") == "ferret"
