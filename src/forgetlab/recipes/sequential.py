"""`forgetlab sequential`: fine-tune on tasks one after another and measure what is forgotten, and why.

Reads top to bottom: load tasks → load model → evaluate the base → for each stage: train, evaluate every task,
measure the landscape at the checkpoint, save → final metrics, diagnostics, forgetting estimates, report.
A stage is one task for a continual strategy, all tasks at once for `joint`, and there is none for `base`.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from .. import __version__
from ..batching import encode
from ..config import SequentialConfig, dump_yaml
from ..data import Task, load_task
from ..errors import Interrupted
from ..evaluate import evaluate_tasks, general_score, task_batches
from ..landscape import checkpoint_landscape, forgetting_estimates
from ..loop import steps_for, train
from ..methods import MethodContext, build_method, call_hook
from ..model import (
    adapter_state,
    attach_lora,
    load_base,
    load_lora_state,
    save_adapter,
)
from ..report import StepProgress, markdown_table, print_summary, summary_tables, write_report
from ..runs import clean_partial, index_run, new_run_dir, peak_memory_mb, read_json, slug, write_json, write_text
from ..tracking import NullTracker, require, tracker
from .outputs import save_outputs


def run_sequential(cfg: SequentialConfig, resume: Path | None = None, console=None) -> Path:
    """Run the study described by `cfg` (or carry on the interrupted run in `resume`); return the run directory."""
    # Tasks first: bad input fails before a model is loaded.
    require(cfg.run.log)
    tasks = [load_task(spec, cfg.data) for spec in cfg.tasks]
    method = build_method(cfg.strategy.name, cfg.strategy)
    # Base model with one LoRA adapter (seeded init): a bad target fails here, before a run directory exists.
    model, tok = load_base(cfg.model)
    torch.manual_seed(cfg.train.seed)
    model = attach_lora(model, cfg.lora)

    run_dir = Path(resume) if resume else new_run_dir(cfg.run.root, cfg.run.name or f"{cfg.strategy.name}-" + "-".join(
        slug(t.split(":", 1)[1]) for t in cfg.tasks))
    if resume:
        clean_partial(run_dir)  # what a kill mid-write left aside
    # A run stopped before its first stage was recorded (no metrics.json yet) simply starts again in its directory.
    state = read_json(run_dir / "metrics.json") if resume and (run_dir / "metrics.json").is_file() \
        else new_state(cfg, tasks, method)
    state.setdefault("predictions", [{} for _ in state["accuracy"]])  # a run begun before predictions were kept
    state.setdefault("questions", task_questions(tasks))
    write_text(run_dir / "config.yaml", dump_yaml(cfg))
    t0 = time.perf_counter()
    track = tracker(cfg.run.log, run_dir, run_dir.name, cfg.model_dump(mode="json"))
    try:
        study(cfg, tasks, method, model, tok, run_dir, state, console, track)
        state["wall_seconds"] = state.get("wall_seconds", 0.0) + time.perf_counter() - t0
        state["peak_memory_mb"] = max(state.get("peak_memory_mb") or 0.0, peak_memory_mb(model))
        save_state(run_dir, cfg, state, "complete")
        write_report(run_dir, state)
        print_summary(console, state)
        for split, numbers in state["metrics"].items():
            track.scalars({k: v for k, v in numbers.items() if k != "forgetting"}, len(state["stages"]) - 1,
                          f"summary/{split}/")
        track.text("summary", "\n\n".join(f"**{title}**\n\n{markdown_table(header, rows)}"
                                           for title, header, rows in summary_tables(state)))
    except KeyboardInterrupt:
        if state["stages"]:
            save_state(run_dir, cfg, state, "interrupted")
        raise Interrupted(run_dir) from None
    finally:
        track.close()
    return run_dir


def stage_plan(method, tasks: list[Task], stages: tuple[dict[str, float], ...] = (), seed: int = 0) -> list[Task]:
    """What each stage trains on: one task per stage, the curriculum's mixes (`stages`), one joint stage of every
    task's data, or nothing."""
    if method.stages == "none":
        return []
    if method.stages == "joint":
        return [Task("joint", [ex for t in tasks for ex in t.train])]
    if stages:
        return [mixed_stage(i, mix, {t.name: t for t in tasks}, seed) for i, mix in enumerate(stages)]
    return list(tasks)


def mixed_stage(i: int, mix: dict[str, float], tasks: dict[str, Task], seed: int) -> Task:
    """Stage i of a curriculum: as many examples as the largest task of its mix has, each task giving its share
    (round(share × that size), at least one; its examples in a seeded order, cycled where it has fewer), named by its mix
    ("stage2 people70+elements30")."""
    size = max(len(tasks[t].train) for t in mix)
    train = []
    for name, share in mix.items():
        pool = list(tasks[name].train)
        random.Random(f"stage{i}-{name}-{seed}").shuffle(pool)
        train += [pool[j % len(pool)] for j in range(max(1, round(share * size)))]
    label = "+".join(f"{name.split(':', 1)[-1]}{round(100 * share)}" for name, share in mix.items())
    return Task(f"stage{i + 1} {label}", train)


def seen_tasks(tasks: list[Task], stages: tuple[dict[str, float], ...], i: int) -> list[Task]:
    """The tasks trained on up to stage i (what a strategy's hooks are told): the first i + 1 tasks, or the
    curriculum's tasks of stages 1..i + 1."""
    if not stages:
        return tasks[: i + 1]
    names = {t for mix in stages[: i + 1] for t in mix}
    return [t for t in tasks if t.name in names]


def study(cfg: SequentialConfig, tasks, method, model, tok, run_dir: Path, state: dict, console,
          track: NullTracker | None = None) -> None:
    """The body of the study; `state` is updated in place and saved after every stage, and logged to `track`."""
    track = track or NullTracker()
    plan = stage_plan(method, tasks, cfg.stages, cfg.train.seed)
    encoded = [[encode(tok, ex, cfg.train.max_length) for ex in t.train] for t in plan]
    land = [task_batches(tok, t, cfg.landscape.batch_size, cfg.train.max_length, cfg.landscape.batches) for t in plan]
    states = [adapter_state(model)]  # θ at each stage: before, after stage 1, ...

    # Resume: replay each finished stage's hooks around its saved adapters, so strategies that add adapters,
    # merge them or keep a Fisher or a buffer are rebuilt exactly as they were.
    done = len(state["stages"]) - 1
    for i in range(max(0, done)):
        stage_hooks(method, model, plan[i], i, tasks, tok, cfg,
                    lambda ctx, i=i: load_lora_state(model, run_dir / "adapters" / slug(plan[i].name) / "state.safetensors"))
        states.append(adapter_state(model))

    # Row 0: the base model (LoRA B starts at zero, so this is exactly the base).
    if done < 0:
        accuracy, predictions = evaluate_stage(model, tok, tasks, cfg)
        state["stages"].append("before")
        state["accuracy"].append(accuracy)
        state["predictions"].append(predictions)
        state["retention"].append(general_accuracy(model, tok, cfg))
        save_state(run_dir, cfg, state, "incomplete")
        done = 0

    progress = StepProgress(console)
    for i, task in enumerate(plan):
        if i < done:
            continue
        # Train on stage i between the method's before/after hooks.
        t0 = time.perf_counter()

        def fit(ctx, i=i, task=task):
            label, total = f"stage {i + 1}/{len(plan)} {task.name}", steps_for(len(encoded[i]), cfg.train)
            with progress.task(label, total) as tick:
                return train(model, encoded[i], cfg.train, method, ctx, tok.pad_token_id, seed=cfg.train.seed + i,
                             on_step=lambda h: (tick(h), track.step(h, len(state["history"]) + h["step"])))

        history, info = stage_hooks(method, model, task, i, tasks, tok, cfg, fit)
        train_seconds = time.perf_counter() - t0
        states.append(adapter_state(model))
        state["trainable_params"] = max(state.get("trainable_params") or 0,
                                        sum(p.numel() for p in model.parameters() if p.requires_grad))

        # Checkpoint: evaluate every task, landscape of this stage, displacement and forgetting estimates.
        t0 = time.perf_counter()
        accuracy, predictions = evaluate_stage(model, tok, tasks, cfg)
        retention = general_accuracy(model, tok, cfg)
        eval_seconds = time.perf_counter() - t0
        checkpoint = checkpoint_landscape(model, cfg, land[i], states, task.name, train_seconds)
        checkpoint["eval_seconds"] = eval_seconds
        t0 = time.perf_counter()
        estimates = forgetting_estimates(model, cfg, [t.name for t in plan], land, states, state["checkpoints"]) \
            if method.same_parameters else []
        checkpoint["landscape_seconds"] = checkpoint.get("landscape_seconds", 0.0) + time.perf_counter() - t0
        adapter_dir = run_dir / "adapters" / slug(task.name)
        save_adapter(model, adapter_dir, {"task": task.name, "stage": i + 1, "step": len(state["history"]) + len(history),
                                          "version": __version__, "config": cfg.model_dump(mode="json"),
                                          "accuracy": accuracy, "method_info": info}, lora_state_file=True)
        # Record the stage in one go, so an interrupt never leaves it half-recorded.
        state["history"] += [dict(row, task=task.name, global_step=len(state["history"]) + n + 1)
                             for n, row in enumerate(history)]
        state["stages"].append(f"after {task.name}")
        state["accuracy"].append(accuracy)
        state["predictions"].append(predictions)
        state["retention"].append(retention)
        state["checkpoints"].append(checkpoint)
        state["estimates"] += estimates
        state["method_info"].append(info or {})
        save_state(run_dir, cfg, state, "incomplete")
        track.scalars({**{f"{t}/{s}": row.get("accuracy") for t, splits in accuracy.items() for s, row in splits.items()},
                       "general": retention, "train_seconds": train_seconds}, i + 1, "eval/")


def stage_hooks(method, model, task, i: int, tasks, tok, cfg: SequentialConfig, body):
    """before_task → body(ctx) → after_task for stage i; returns (body's result, after_task's result).

    The global RNG is seeded per stage first, so an adapter a hook creates is initialised the same way whether the
    run is fresh or resumed.
    """
    ctx = MethodContext(task_index=i, tasks=seen_tasks(tasks, cfg.stages, i), tokenizer=tok, train=cfg.train)
    torch.manual_seed(cfg.train.seed * 1000 + i)
    call_hook(method, "before_task", model, task, ctx)
    result = body(ctx)
    info = call_hook(method, "after_task", model, task, ctx)
    return result, info


def new_state(cfg: SequentialConfig, tasks, method) -> dict:
    return {"version": __version__, "kind": "sequential", "method": cfg.strategy.name, "seed": cfg.train.seed,
            "plan": "curriculum" if cfg.stages and method.stages == "sequential" else method.stages,
            "curriculum": [dict(mix) for mix in cfg.stages] if method.stages == "sequential" else [],
            "tasks": [t.name for t in tasks],
            "splits": sorted({s for t in tasks for s in t.splits}, key=["seen", "held_out"].index),
            "stages": [], "accuracy": [], "retention": [], "history": [], "checkpoints": [], "estimates": [],
            "method_info": [], "predictions": [], "questions": task_questions(tasks)}


def evaluate_stage(model, tok, tasks, cfg: SequentialConfig) -> tuple[dict, dict]:
    """Every task's scores per split, and apart from them each item's prediction (predictions.csv, the flips)."""
    scores = evaluate_tasks(model, tok, tasks, cfg.eval, items=True)
    items = {t: {s: row.pop("items") for s, row in splits.items() if "items" in row} for t, splits in scores.items()}
    return scores, items


def task_questions(tasks) -> dict:
    """Each task's evaluated questions per split, in the order their predictions are kept."""
    return {t.name: {s: [it.question for it in t.mcq[s]] if t.mcq else [ex.messages[-1]["content"] for ex in t.qa[s]]
                     for s in t.splits} for t in tasks}


def general_accuracy(model, tok, cfg: SequentialConfig) -> float | None:
    """The general score (evaluate.general_score); None when switched off."""
    return general_score(model, tok, cfg.general) if cfg.general.enabled else None


def save_state(run_dir: Path, cfg: SequentialConfig, state: dict, status: str) -> None:
    """metrics.json, the CSVs and the index row: rewritten after every stage, atomically."""
    state["status"] = status
    save_outputs(run_dir, cfg.diagnostics, state)
    write_json(run_dir / "metrics.json", state)
    headline = state["metrics"].get(state["splits"][0], {})
    index_run(cfg.run.root, run_dir, "sequential", run_dir.name, status,
              {k: headline.get(k) for k in ("average_accuracy", "bwt")})
