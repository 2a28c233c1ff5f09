"""`forgetlab compare`: every strategy on the same tasks, seeds and budget; one table and one report.

Reads top to bottom: validate the strategies and tasks → write each (strategy, seed)'s config → run each as a Ray
task (grid.py: local by default, a cluster with --address) that starts `forgetlab sequential` in its own process (a
failure, or running out of memory, stays in that run; peak memory is that process's own) → aggregate mean ± spread
over seeds → comparison.csv / comparison.md / report.html and the printed table.
`--resume` reuses finished runs and resumes interrupted ones.
"""

from __future__ import annotations

from pathlib import Path

from ..config import CompareConfig, SequentialConfig, build_config, dump_yaml
from ..data import load_task
from ..grid import grid_status, run_command, run_grid, start_ray
from ..methods import build_method, split_variant
from ..model import check_model
from ..runs import child_run, clean_partial, index_run, new_run_dir, slug, write_json, write_text
from ..tracking import require
from .comparison import comparison_rows, print_comparison, write_comparison


def run_compare(cfg: CompareConfig, resume: Path | None = None, console=None) -> Path:
    """Run every strategy × seed of `cfg` (or finish the comparison in `resume`); return the comparison directory."""
    # Validate up front: an unknown strategy or setting or a bad task fails before anything runs.
    for entry in cfg.strategies:
        child = child_config(cfg, Path("."), entry, cfg.seeds[0])
        build_method(child.strategy.name, child.strategy)
    for spec in cfg.tasks:
        load_task(spec, cfg.data)
    require(cfg.run.log)
    check_model(cfg.model.name)
    start_ray(cfg.executor)  # joined or started before any directory exists: a bad address leaves nothing
    out = Path(resume) if resume else new_run_dir(cfg.run.root, cfg.run.name or "compare-" + "-".join(
        slug(t.split(":", 1)[1]) for t in cfg.tasks))
    if resume:
        clean_partial(out)  # what a kill mid-write left aside
    write_text(out / "config.yaml", dump_yaml(cfg))

    # One Ray task per strategy and seed, each running `forgetlab sequential` in a child process; the table is
    # rewritten as runs finish.
    jobs = [(s, seed) for s in cfg.strategies for seed in cfg.seeds]
    for strategy, seed in jobs:  # written here, so a point on another machine runs exactly this
        child = child_config(cfg, out, strategy, seed)
        write_text(out / "configs" / f"{child.run.name}.yaml", dump_yaml(child))
    results = run_grid(jobs, lambda job: run_child(out, *job),
                       lambda done, status: finish(cfg, out, done, status, console if status == "interrupted" else None),
                       out, lambda job: f"{job[0]}, seed {job[1]}", console, executor=cfg.executor,
                       failed=lambda job, error: {"strategy": job[0], "seed": job[1], "run_dir": None, "status": "failed",
                                                  "error": error, "seconds": None})
    finish(cfg, out, results, grid_status(results), console)
    return out


def child_config(cfg: CompareConfig, out: Path, strategy: str, seed: int) -> SequentialConfig:
    """The `forgetlab sequential` config of one entry of `strategies` (a name, or a name with settings such as
    'ewc:lam=1e6') and one seed."""
    name, sets = split_variant(strategy)
    data = cfg.model_dump(mode="json", exclude={"strategies", "seeds", "executor"})
    data["strategy"]["name"] = name
    data["train"]["seed"] = seed
    data["run"] = {**data["run"], "root": str(out / "runs"), "name": child_name(strategy, seed)}  # run.log kept
    return build_config(SequentialConfig, data, sets=sets, source=f"strategy '{strategy}'")


def child_name(strategy: str, seed: int) -> str:
    return f"{slug(strategy)}-s{seed}"


def run_child(out: Path, strategy: str, seed: int) -> dict:
    """Run (or resume, or reuse) one strategy/seed as `forgetlab sequential` in a child process."""
    name = child_name(strategy, seed)
    path = out / "configs" / f"{name}.yaml"
    previous, state = child_run(out / "runs", name)
    status = state.get("status")
    result = {"strategy": strategy, "seed": seed, "run_dir": str(previous) if previous else None, "error": None}
    if status == "complete":
        return dict(result, status="complete", seconds=None)
    args = ["--resume", str(previous)] if status in ("interrupted", "incomplete") else ["--config", str(path)]
    ran = run_command(["sequential", *args], log=out / "logs" / f"{name}.log")
    run_dir, _ = child_run(out / "runs", name)
    return dict(result, **ran, run_dir=str(run_dir) if run_dir else None)


def finish(cfg: CompareConfig, out: Path, results: list[dict], status: str, console) -> None:
    """compare.json, the table files, the report and the index row; printed when a console is given."""
    rows = comparison_rows(cfg.strategies, results)
    write_json(out / "compare.json", {"status": status, "tasks": list(cfg.tasks), "seeds": list(cfg.seeds),
                                      "runs": results, "table": rows})
    write_comparison(out, cfg, rows, results, status)
    naive = next((r for r in rows if r["strategy"] == "naive"), {})
    index_run(cfg.run.root, out, "compare", out.name, status,
              {"average_accuracy": naive.get("average_accuracy", (None,))[0], "bwt": naive.get("bwt", (None,))[0]})
    if console:
        print_comparison(console, rows)
