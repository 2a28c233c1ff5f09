"""Diagnostics metrics against hand-computed values."""

import math

import pytest

from forgetlab.metrics.diagnostics import flips, mean_spread, retention, spike_factors, stagnation


def test_spike_factor_worked_example():
    stages = [[2.0, 1.0, 0.5, 0.3, 0.1], [1.5, 0.9, 0.4, 0.2]]
    assert spike_factors(stages, 2) == [1.2 / 0.2]
    assert spike_factors([[1.0]], 2) == []
    assert math.isnan(spike_factors([[], [1.0]], 2)[0])


def test_stagnation():
    # Trailing means of 2 from index 1: 2.5, 2.0, 2.0, 2.0, ... -> last new best at index 2, flat from 3 to the end.
    assert stagnation([3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0], window=2, tol=0.01, floor=0.05) == 3
    # A plateau after a task switch that the stage leaves again is not stagnation.
    assert stagnation([2.0, 2.0, 2.0, 2.0, 2.0, 1.0, 0.5, 0.2], window=2, tol=0.01, floor=0.05) is None
    # Noisy but falling on average (means 2.0, 2.0, 1.95, 1.9, 1.85, 1.8, 1.75): never flagged.
    assert stagnation([3.0, 1.0, 3.0, 0.9, 2.9, 0.8, 2.8, 0.7], window=2, tol=0.01, floor=0.05) is None
    assert stagnation([3.0, 2.0, 1.5, 1.0, 0.5], window=2, tol=0.01, floor=0.05) is None
    assert stagnation([3.0, 0.04, 0.04, 0.04, 0.04, 0.04], window=2, tol=0.01, floor=0.05) is None


def test_retention_and_mean_spread():
    assert retention(0.45, 0.9) == 0.5
    assert math.isnan(retention(0.5, 0.0))
    mean, spread = mean_spread([0.5, 0.7, float("nan"), None])
    assert mean == 0.6 and abs(spread - 0.1) < 1e-12
    assert all(math.isnan(x) for x in mean_spread([]))


def test_flips_by_hand():
    before = [True, True, False, False, True]
    after = [True, False, True, False, False]
    lost, gained = flips(before, after)
    assert lost == [1, 4] and gained == [2]
    assert (len(gained) - len(lost)) / 5 == pytest.approx(sum(after) / 5 - sum(before) / 5)
    with pytest.raises(ValueError, match="3 items before, 2 after"):
        flips([True] * 3, [True] * 2)
