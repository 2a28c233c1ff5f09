"""`forgetlab sequential`: fine-tune on tasks one after another and measure what is forgotten, and why.

Reads top to bottom: load tasks → load model → evaluate the base → for each task: train, evaluate every task,
measure the landscape at the checkpoint, save → final metrics, forgetting estimates, report.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..batching import encode
from ..config import SequentialConfig, dump_yaml
from ..data import load_task
from ..errors import Interrupted
from ..evaluate import evaluate_task, mean_loss, task_batches
from ..landscape import delta_w_norm, quadratic_form, top_eigenvalues
from ..loop import steps_for, train
from ..methods import MethodContext, build_method, call_hook
from ..metrics.continual import summary
from ..model import adapter_state, attach_lora, flat, load_adapter_state, load_adapter_weights, load_base, save_adapter
from ..report import StepProgress, print_summary, write_report
from ..runs import index_run, new_run_dir, read_json, slug, write_csv, write_json, write_text


def run_sequential(cfg: SequentialConfig, resume: Path | None = None, console=None) -> Path:
    """Run the study described by `cfg` (or carry on the interrupted run in `resume`); return the run directory."""
    # Tasks first: bad input fails before a model is loaded.
    tasks = [load_task(spec, cfg.data) for spec in cfg.tasks]
    method = build_method(cfg.train.method)
    # Base model with one LoRA adapter (seeded init): a bad target fails here, before a run directory exists.
    model, tok = load_base(cfg.model)
    torch.manual_seed(cfg.train.seed)
    model = attach_lora(model, cfg.lora)

    run_dir = Path(resume) if resume else new_run_dir(cfg.run.root, cfg.run.name or "sequential-" + "-".join(
        slug(t.split(":", 1)[1]) for t in cfg.tasks))
    state = read_json(run_dir / "metrics.json") if resume else new_state(cfg, tasks)
    state["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    write_text(run_dir / "config.yaml", dump_yaml(cfg))
    try:
        study(cfg, tasks, method, model, tok, run_dir, state, console)
    except KeyboardInterrupt:
        if state["stages"]:
            save_state(run_dir, cfg, state, "interrupted")
        raise Interrupted(run_dir) from None
    write_report(run_dir, state)
    print_summary(console, state)
    return run_dir


def study(cfg: SequentialConfig, tasks, method, model, tok, run_dir: Path, state: dict, console) -> None:
    """The body of the study; `state` is updated in place and saved after every stage."""
    # Each task's tokenized training records and fixed landscape batches.
    encoded = [[encode(tok, ex, cfg.train.max_length) for ex in t.train] for t in tasks]
    land = [task_batches(tok, t, cfg.landscape.batch_size, cfg.train.max_length, cfg.landscape.batches) for t in tasks]
    states = [adapter_state(model)]  # θ at each stage: before, after task 1, ...

    # Resume: reload every finished task's adapter (θ_i is needed for the forgetting estimates).
    done = len(state["stages"]) - 1
    for i in range(max(0, done)):
        load_adapter_weights(model, run_dir / "adapters" / slug(tasks[i].name))
        states.append(adapter_state(model))

    # Row 0: the base model (LoRA B starts at zero, so this is exactly the base).
    if done < 0:
        state["stages"].append("before")
        state["accuracy"].append(evaluate_stage(model, tok, tasks, cfg))
        save_state(run_dir, cfg, state, "incomplete")
        done = 0

    progress = StepProgress(console)
    for i, task in enumerate(tasks):
        if i < done:
            continue
        # Train on task i.
        ctx = MethodContext(task_index=i, tasks=tasks[: i + 1], tokenizer=tok, config=cfg)
        call_hook(method, "before_task", model, task, ctx)
        t0 = time.perf_counter()
        with progress.task(f"task {i + 1}/{len(tasks)} {task.name}", steps_for(len(encoded[i]), cfg.train)) as tick:
            history = train(model, encoded[i], cfg.train, method, ctx, tok.pad_token_id,
                            seed=cfg.train.seed + i, on_step=tick)
        call_hook(method, "after_task", model, task, ctx)
        states.append(adapter_state(model))

        # Checkpoint: evaluate every task, landscape of this task, displacement and forgetting estimates.
        accuracy = evaluate_stage(model, tok, tasks, cfg)
        checkpoint = checkpoint_landscape(model, cfg, land[i], states, task.name, time.perf_counter() - t0)
        estimates = forgetting_estimates(model, cfg, tasks, land, states, state["checkpoints"])
        save_adapter(model, run_dir / "adapters" / slug(task.name),
                     {"task": task.name, "stage": i + 1, "step": len(state["history"]) + len(history),
                      "version": __version__, "config": cfg.model_dump(mode="json"), "accuracy": accuracy})
        # Record the stage in one go, so an interrupt never leaves it half-recorded.
        state["history"] += [dict(row, task=task.name, global_step=len(state["history"]) + n + 1)
                             for n, row in enumerate(history)]
        state["stages"].append(f"after {task.name}")
        state["accuracy"].append(accuracy)
        state["checkpoints"].append(checkpoint)
        state["estimates"] += estimates
        save_state(run_dir, cfg, state, "incomplete" if i < len(tasks) - 1 else "complete")


def new_state(cfg: SequentialConfig, tasks) -> dict:
    return {"version": __version__, "kind": "sequential", "tasks": [t.name for t in tasks],
            "splits": sorted({s for t in tasks for s in t.splits}, key=["seen", "held_out"].index),
            "stages": [], "accuracy": [], "history": [], "checkpoints": [], "estimates": []}


def evaluate_stage(model, tok, tasks, cfg: SequentialConfig) -> dict:
    return {t.name: evaluate_task(model, tok, t, cfg.eval) for t in tasks}


def accuracy_matrix(state: dict, split: str) -> np.ndarray:
    """R for one split: (stages, tasks); nan where a task lacks the split."""
    return np.array([[row[t].get(split, {}).get("accuracy", np.nan) for t in state["tasks"]]
                     for row in state["accuracy"]], dtype=float)


def checkpoint_landscape(model, cfg: SequentialConfig, batches, states, task_name: str, train_seconds: float) -> dict:
    """Loss, top Hessian eigenvalues and displacement of the checkpoint just reached."""
    scaling = cfg.lora.alpha / cfg.lora.r
    row = {"task": task_name, "loss": mean_loss(model, batches), "train_seconds": train_seconds,
           "dtheta_prev": float((flat(states[-1]) - flat(states[-2])).norm()),
           "dW_prev": delta_w_norm(states[-2], states[-1], scaling), "eigenvalues": []}
    if cfg.landscape.enabled:
        row["eigenvalues"] = top_eigenvalues(model, batches, cfg.landscape.top_k, cfg.landscape.iterations,
                                             seed=cfg.train.seed)
    return row


def forgetting_estimates(model, cfg: SequentialConfig, tasks, land, states, checkpoints) -> list[dict]:
    """For each earlier task i: measured loss increase since its checkpoint beside ½ΔθᵀH_iΔθ and ½λ_max||Δθ||²."""
    if not cfg.landscape.enabled:
        return []
    j = len(states) - 1
    now = states[-1]
    rows = []
    for i in range(j - 1):
        ck = checkpoints[i]
        dtheta = flat(now) - flat(states[i + 1])
        load_adapter_state(model, states[i + 1])
        quad = quadratic_form(model, land[i], dtheta)
        load_adapter_state(model, now)
        lam = ck["eigenvalues"][0]
        increase = mean_loss(model, land[i]) - ck["loss"]
        bound = 0.5 * lam * float(dtheta.norm()) ** 2
        rows.append({"task": tasks[i].name, "after": tasks[j - 1].name, "dtheta": float(dtheta.norm()),
                     "dW": delta_w_norm(states[i + 1], now, cfg.lora.alpha / cfg.lora.r), "lambda_max": lam,
                     "quadratic": quad, "bound": bound, "loss_increase": increase, "bound_held": increase <= bound})
    return rows


def save_state(run_dir: Path, cfg: SequentialConfig, state: dict, status: str) -> None:
    """metrics.json, the CSVs and the index row: rewritten after every stage, atomically."""
    state["status"] = status
    learned = len(state["stages"]) - 1  # metrics over the tasks learned so far: R[:learned + 1, :learned]
    state["metrics"] = {s: summary(accuracy_matrix(state, s)[:, :learned]) for s in state["splits"]} if learned else {}
    write_json(run_dir / "metrics.json", state)
    cols = [(t, s) for t in state["tasks"] for s in state["splits"]]
    write_csv(run_dir / "accuracy_matrix.csv", ["stage"] + [f"{t}/{s}" for t, s in cols],
              [[stage] + [row[t].get(s, {}).get("accuracy", float("nan")) for t, s in cols]
               for stage, row in zip(state["stages"], state["accuracy"], strict=False)])
    keys = ["global_step", "task", "step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"]
    write_csv(run_dir / "history.csv", keys, [[h[k] for k in keys] for h in state["history"]])
    write_csv(run_dir / "eigenvalues.csv", ["task", "rank", "eigenvalue"],
              [[c["task"], r + 1, ev] for c in state["checkpoints"] for r, ev in enumerate(c["eigenvalues"])])
    headline = state["metrics"].get("seen", {})
    index_run(cfg.run.root, run_dir, "sequential", run_dir.name, status,
              {k: headline.get(k) for k in ("average_accuracy", "bwt")})
