"""What a sequential run derives from its state after every stage: metrics, diagnostics and the CSV files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..config import DiagnosticsConfig
from ..metrics.continual import summary
from ..metrics.diagnostics import flips, retention, spike_factors, stagnation
from ..runs import write_csv


def accuracy_matrix(state: dict, split: str) -> np.ndarray:
    """R for one split: (stages, tasks); nan where a task lacks the split."""
    return np.array([[row[t].get(split, {}).get("accuracy", np.nan) for t in state["tasks"]]
                     for row in state["accuracy"]], dtype=float)


def split_metrics(state: dict) -> dict:
    """Per split: the continual metrics over the tasks learned so far (R[:learned + 1, :learned]).

    For the references (`joint`, `base`) only the average accuracy of the last row is defined; for a curriculum
    (stages that mix and revisit tasks) the average accuracy of the last row and each task's forgetting (its best
    accuracy after any earlier stage minus its last), BWT, FWT and plasticity needing one task per stage.
    """
    learned = len(state["stages"]) - 1
    out = {}
    for s in state["splits"]:
        R = accuracy_matrix(state, s)
        if state.get("plan", "sequential") == "sequential":
            if learned:
                out[s] = summary(R[:, :learned])
        elif state["plan"] == "curriculum":
            if learned:
                out[s] = {"average_accuracy": float(np.nanmean(R[-1])), "bwt": math.nan, "fwt": math.nan,
                          "plasticity": math.nan,
                          "forgetting": [float(np.nanmax(R[1:-1, j]) - R[-1, j]) if learned > 1 else math.nan
                                         for j in range(R.shape[1])]}
        else:
            out[s] = {"average_accuracy": float(np.nanmean(R[-1])), "bwt": math.nan, "fwt": math.nan,
                      "plasticity": math.nan, "forgetting": [math.nan] * R.shape[1]}
    return out


def diagnostics(state: dict, cfg: DiagnosticsConfig) -> dict:
    """Loss spikes at stage boundaries, stagnating stages, and after every stage two retentions named apart: general
    retention (the general questions against the base model's score) and task-1 retention (the first task learned,
    on the first split, against its accuracy right after its own stage: what the forgetting study's documents call
    base retention)."""
    stages = [s.removeprefix("after ") for s in state["stages"][1:]]
    losses = [[h["loss"] for h in state["history"] if h["task"] == t] for t in stages]
    spikes = spike_factors(losses, cfg.spike_window)
    stalls = [stagnation(ls, cfg.stagnation_window, cfg.stagnation_tol, cfg.converged_loss) for ls in losses]
    general = state.get("retention") or []
    base = general[0] if general else None
    first = accuracy_matrix(state, state["splits"][0])[:, 0] if state["accuracy"] and state["splits"] else []
    # task 1 is learned in stage 1, or in a curriculum the first stage that trains it
    at = next((k + 1 for k, mix in enumerate(state.get("curriculum") or []) if state["tasks"][0] in mix), 1)
    learned = first[at] if len(first) > at and state.get("plan", "sequential") in ("sequential", "curriculum") else None
    return {
        "spikes": [{"task": t, "factor": f, "flagged": bool(f > cfg.spike_threshold)}
                   for t, f in zip(stages[1:], spikes, strict=False)],
        "stagnation": [{"task": t, "step": s} for t, s in zip(stages, stalls, strict=False) if s is not None],
        "general_accuracy": general,
        "general_retention": [retention(a, base) if a is not None and base is not None else None for a in general],
        "task1_accuracy": [float(a) for a in first],
        "task1_retention": [retention(float(a), float(learned)) if k >= at and learned is not None else None
                            for k, a in enumerate(first)],
    }


def boundary_flips(state: dict) -> list[dict]:
    """Per stage boundary, task and split: the items that went right → wrong ("lost") and wrong → right
    ("gained"), from the kept predictions (none where a stage has none)."""
    preds, out = state.get("predictions") or [], []
    for k in range(1, min(len(preds), len(state["stages"]))):
        for task, splits in preds[k].items():
            for split, after in splits.items():
                before = (preds[k - 1].get(task) or {}).get(split)
                if not after or before is None or len(before) != len(after):
                    continue
                lost, gained = flips([b["correct"] for b in before], [a["correct"] for a in after])
                out.append({"stage": state["stages"][k], "task": task, "split": split, "items": len(after),
                            "lost": lost, "gained": gained})
    return out


def nan_if_none(x):
    return float("nan") if x is None else x


def save_outputs(run_dir: Path, cfg: DiagnosticsConfig, state: dict) -> None:
    """Fill state["metrics"], state["diagnostics"] and state["flips"]; write accuracy_matrix.csv, retention.csv,
    history.csv, predictions.csv (each evaluated item at each stage) and eigenvalues.csv."""
    state["metrics"] = split_metrics(state)
    state["diagnostics"] = diagnostics(state, cfg)
    cols = [(t, s) for t in state["tasks"] for s in state["splits"]]
    write_csv(run_dir / "accuracy_matrix.csv", ["stage"] + [f"{t}/{s}" for t, s in cols],
              [[stage] + [row[t].get(s, {}).get("accuracy", float("nan")) for t, s in cols]
               for stage, row in zip(state["stages"], state["accuracy"], strict=False)])
    diag = state["diagnostics"]
    write_csv(run_dir / "retention.csv",
              ["stage", "general_accuracy", "general_retention", "task1_accuracy", "task1_retention"],
              [[stage, nan_if_none(a), nan_if_none(r), t, nan_if_none(tr)] for stage, a, r, t, tr in
               zip(state["stages"], diag["general_accuracy"], diag["general_retention"], diag["task1_accuracy"],
                   diag["task1_retention"], strict=False)])
    keys = ["global_step", "task", "step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"]
    write_csv(run_dir / "history.csv", keys, [[h[k] for k in keys] for h in state["history"]])
    state["flips"] = boundary_flips(state)
    write_csv(run_dir / "predictions.csv",
              ["task", "split", "item", "stage", "answer", "correct", "option_logprobs"],
              [[task, split, i, stage, p["answer"], int(p["correct"]),
                "" if p["logprobs"] is None else ";".join(f"{x:.4f}" for x in p["logprobs"])]
               for stage, row in zip(state["stages"], state.get("predictions") or [], strict=False)
               for task, splits in row.items() for split, items in splits.items() for i, p in enumerate(items)])
    write_csv(run_dir / "eigenvalues.csv", ["task", "rank", "eigenvalue"],
              [[c["task"], r + 1, ev] for c in state["checkpoints"] for r, ev in enumerate(c["eigenvalues"])])
