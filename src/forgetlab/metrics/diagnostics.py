"""Training diagnostics on plain loss histories: loss spikes at task boundaries, stagnation, base retention.

Worked example (two stages, window 2):

    stage 1 losses: [2.0, 1.0, 0.5, 0.3, 0.1]
    stage 2 losses: [1.5, 0.9, 0.4, 0.2]

    spike_factors([...], window=2) = [mean(1.5, 0.9) / mean(0.3, 0.1)] = [1.2 / 0.2] = [6.0]
"""

from __future__ import annotations

import math

import numpy as np


def spike_factors(stage_losses: list[list[float]], window: int) -> list[float]:
    """Loss spike factor at each task boundary, one per stage after the first.

    The factor at the start of stage k is the mean training loss of its first `window` steps divided by the mean
    of the last `window` steps of stage k−1: how much higher the new task starts than where the previous one
    ended. Example in the module docstring: [6.0]. nan where a stage has no steps or the previous loss is 0.
    """
    out = []
    for prev, cur in zip(stage_losses, stage_losses[1:], strict=False):
        end = float(np.mean(prev[-window:])) if prev else math.nan
        start = float(np.mean(cur[:window])) if cur else math.nan
        out.append(start / end if end and not math.isnan(end) else math.nan)
    return out


def stagnation(losses: list[float], window: int, tol: float, floor: float) -> int | None:
    """Index of the step at which the loss had gone `window` steps without a new best (by more than `tol`
    relative), while the best was still above `floor` (below it, a flat loss is convergence); None if never.

    >>> stagnation([3.0, 2.0, 2.0, 1.99, 2.1, 2.0], window=3, tol=0.01, floor=0.05)
    4
    >>> stagnation([3.0, 0.04, 0.04, 0.04, 0.04], window=3, tol=0.01, floor=0.05) is None
    True
    """
    best, last = math.inf, 0
    for i, loss in enumerate(losses):
        if loss < best * (1 - tol):
            best, last = loss, i
        elif i - last >= window and best > floor:
            return i
    return None


def base_retention(accuracy: float, base_accuracy: float) -> float:
    """Accuracy on the general set relative to the base model's: 1.0 keeps everything. 0.45 / 0.9 = 0.5."""
    return accuracy / base_accuracy if base_accuracy else math.nan


def mean_spread(values: list[float]) -> tuple[float, float]:
    """(mean, standard deviation) over the finite values; (nan, nan) when there are none.

    mean_spread([0.5, 0.7, nan]) = (0.6, 0.1)
    """
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not len(v):
        return math.nan, math.nan
    return float(v.mean()), float(v.std())
