"""Continual-learning metrics on an accuracy matrix.

R has T+1 rows and T columns: row 0 is before any training, row i (1..T) after training on task i;
column j is task j+1. Worked example used throughout (two tasks):

    R = [[0.25, 0.30],     before training
         [0.80, 0.35],     after task 1
         [0.50, 0.90]]     after task 2

    average_accuracy(R) = (0.50 + 0.90) / 2        = 0.70
    bwt(R)              = 0.50 - 0.80              = -0.30
    forgetting(R)       = [0.80 - 0.50, nan]       = [0.30, nan]
    fwt(R)              = 0.35 - 0.30              = 0.05
    plasticity(R)       = (0.80 + 0.90) / 2        = 0.85
"""

from __future__ import annotations

import numpy as np


def _check(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] + 1:
        raise ValueError(f"accuracy matrix must be (T+1, T), got {R.shape}")
    return R


def average_accuracy(R) -> float:
    """Mean accuracy over all tasks after the last one. Example above: 0.70."""
    return float(_check(R)[-1].mean())


def bwt(R) -> float:
    """Backward transfer: mean over tasks 1..T-1 of (final accuracy − accuracy right after learning it).

    Negative means forgetting. Example above: 0.50 − 0.80 = −0.30. nan with one task.
    """
    R = _check(R)
    T = R.shape[1]
    if T < 2:
        return float("nan")
    return float(np.mean([R[T, j] - R[j + 1, j] for j in range(T - 1)]))


def forgetting(R) -> np.ndarray:
    """Per task: best accuracy at any earlier stage (rows 1..T-1) minus the final accuracy; nan for the last task.

    Example above: [0.80 − 0.50, nan] = [0.30, nan].
    """
    R = _check(R)
    T = R.shape[1]
    out = np.full(T, np.nan)
    for j in range(T - 1):
        out[j] = R[1:T, j].max() - R[T, j]
    return out


def fwt(R) -> float:
    """Forward transfer: mean over tasks 2..T of (accuracy just before learning it − accuracy before any training).

    Example above: 0.35 − 0.30 = 0.05. nan with one task.
    """
    R = _check(R)
    T = R.shape[1]
    if T < 2:
        return float("nan")
    return float(np.mean([R[j, j] - R[0, j] for j in range(1, T)]))


def plasticity(R) -> float:
    """Mean accuracy on each task right after learning it (the diagonal R[i, i-1]). Example above: 0.85."""
    R = _check(R)
    return float(np.mean([R[j + 1, j] for j in range(R.shape[1])]))


def summary(R) -> dict:
    """All of the above in one dict (forgetting as a list, nan kept)."""
    return {"average_accuracy": average_accuracy(R), "bwt": bwt(R), "fwt": fwt(R), "plasticity": plasticity(R),
            "forgetting": forgetting(R).tolist()}
