"""Diagnostics metrics against hand-computed values."""

import math

from forgetlab.metrics.diagnostics import base_retention, mean_spread, spike_factors, stagnation


def test_spike_factor_worked_example():
    stages = [[2.0, 1.0, 0.5, 0.3, 0.1], [1.5, 0.9, 0.4, 0.2]]
    assert spike_factors(stages, 2) == [1.2 / 0.2]
    assert spike_factors([[1.0]], 2) == []
    assert math.isnan(spike_factors([[], [1.0]], 2)[0])


def test_stagnation():
    assert stagnation([3.0, 2.0, 2.0, 1.99, 2.1, 2.0], window=3, tol=0.01, floor=0.05) == 4
    assert stagnation([3.0, 2.0, 1.5, 1.0, 0.5], window=2, tol=0.01, floor=0.05) is None
    assert stagnation([3.0, 0.04, 0.04, 0.04, 0.04], window=3, tol=0.01, floor=0.05) is None


def test_base_retention_and_mean_spread():
    assert base_retention(0.45, 0.9) == 0.5
    assert math.isnan(base_retention(0.5, 0.0))
    mean, spread = mean_spread([0.5, 0.7, float("nan"), None])
    assert mean == 0.6 and abs(spread - 0.1) < 1e-12
    assert all(math.isnan(x) for x in mean_spread([]))
