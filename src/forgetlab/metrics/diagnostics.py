"""Training diagnostics on plain loss histories: loss spikes at task boundaries, stagnation, retention.

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
    """Index of the step from which a stage made no more progress to its end, or None.

    Per-step losses are noisy (batches differ), so the test runs on the trailing mean of `window` steps. A stage
    stagnated when its last new best of that mean (better by more than `tol`, relative) came at least `window`
    steps before its end while the best was still above `floor` (below it, a flat loss is convergence). A plateau
    the stage later leaves (common right after a task switch) is not flagged.

    >>> stagnation([3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0], window=2, tol=0.01, floor=0.05)
    3
    >>> stagnation([3.0, 1.0, 3.0, 0.9, 2.9, 0.8, 2.8, 0.7], window=2, tol=0.01, floor=0.05) is None
    True
    """
    best, last = math.inf, None
    for i in range(window - 1, len(losses)):
        mean = sum(losses[i - window + 1:i + 1]) / window
        if mean < best * (1 - tol):
            best, last = mean, i
    if last is not None and len(losses) - 1 - last >= window and best > floor:
        return last + 1
    return None


def retention(accuracy: float, reference: float) -> float:
    """Accuracy relative to a reference accuracy: 1.0 keeps everything. 0.45 / 0.9 = 0.5. General retention: the
    general questions against the base model's score; task-1 retention: task 1 against its accuracy right after
    it was learned."""
    return accuracy / reference if reference else math.nan


def mean_spread(values: list[float]) -> tuple[float, float]:
    """(mean, standard deviation) over the finite values; (nan, nan) when there are none.

    mean_spread([0.5, 0.7, nan]) = (0.6, 0.1)
    """
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not len(v):
        return math.nan, math.nan
    return float(v.mean()), float(v.std())


def flips(before: list[bool], after: list[bool]) -> tuple[list[int], list[int]]:
    """The items (indices) that went right → wrong and wrong → right between two evaluations of the same items.
    len(second) − len(first) = (accuracy after − accuracy before) × items."""
    if len(before) != len(after):
        raise ValueError(f"flips: {len(before)} items before, {len(after)} after")
    lost = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a and not b]
    gained = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if b and not a]
    return lost, gained
