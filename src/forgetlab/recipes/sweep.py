"""`forgetlab sweep`: a grid of unlearning runs, each followed by RTT, on Ray; does LoRA rank change what RTT recovers?

Reads top to bottom: validate the axes (every point's config, before anything runs) → one Ray task per point, each
running `forgetlab unlearn --config` in a child process (a point finished in an earlier run of the sweep is read back,
not rerun) → sweep.csv (one row per point) and recovery_vs_rank.csv (mean, std, count per rank and method) rewritten
as points finish → plots, report.html and the printed tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import SweepConfig, dump_yaml
from ..grid import grid_status, run_command, run_grid, start_ray
from ..model import check_model
from ..report import fmt, print_tables, save_plot, write_page
from ..runs import child_run, clean_partial, index_run, new_run_dir, slug, write_csv, write_json, write_text
from .unlearn_scores import COLUMNS as FIELD_COLUMNS

FIELDS = [k for k, _ in FIELD_COLUMNS]
"""The field's measures (recipes/unlearn_scores.py) at the kept step, one column each."""
POINT_COLUMNS = ["status", "forget_before", "forget_after", "retain_before", "retain_after", "general_after",
                 "rtt_original", "rtt_unlearned", "rtt_unlearned_rtt", "rtt_original_rtt", "recovery_rate",
                 "recovered_share", "recovery_epoch", "recovery_epoch_abs", *FIELDS, "seconds", "peak_memory_mb",
                 "run_dir", "error"]
RANK_METRICS = ["recovery_rate", "recovered_share", "recovery_epoch", "recovery_epoch_abs", "forget_after",
                "retain_after", "general_after", "forget_tr", "utility"]
EPOCHS = ("recovery_epoch", "recovery_epoch_abs")
"""Recovery epochs: None where a point's RTT never reached the threshold, so each has a count of points that did."""


def run_sweep(cfg: SweepConfig, resume: Path | None = None, console=None) -> Path:
    """Run every point of `cfg` (or the missing ones of the sweep in `resume`); return the sweep directory."""
    from ..unlearning import check_inputs

    points = cfg.points()
    for point in points:
        check_inputs(cfg.point_config(point))  # a missing data file fails before anything runs
    if not {"model.name", "model"} & set(cfg.axes):  # a model shared by every point is checked once, here
        check_model(cfg.point_config(points[0]).model.name)
    start_ray(cfg.executor)  # joined or started before any directory exists: a bad address leaves nothing
    learned = cfg.unlearn.get("learn_first")
    out = Path(resume) if resume else new_run_dir(cfg.run.root, cfg.run.name or "sweep-" + "-".join(
        slug(k.split(".")[-1]) for k in cfg.axes) + (f"-learned-{slug(str(learned))}" if learned else ""))
    if resume:
        clean_partial(out)  # what a kill mid-write left aside
    write_text(out / "config.yaml", dump_yaml(cfg))
    jobs = list(zip(point_names(points), points, strict=True))
    for name, point in jobs:
        write_text(out / "configs" / f"{name}.yaml", dump_yaml(cfg.point_config(point, str(out / "runs"), name)))
    results = run_grid(jobs, lambda job: run_point(out, *job),
                       lambda done, status: finish(cfg, out, done, status, console if status == "interrupted" else None),
                       out, lambda job: job[0], console, command="sweep", executor=cfg.executor,
                       failed=lambda job, error: {"point": job[0], **job[1], "status": "failed", "error": error})
    finish(cfg, out, results, grid_status(results), console)
    return out


def point_name(point: dict) -> str:
    """A short directory name: method names as they are, other values after their key's last part (paths by their
    last part)."""
    def short(v) -> str:
        return Path(v).name if isinstance(v, str) and "/" in v else str(v)

    parts = [short(v) if k in ("method.name", "method") else f"{k.split('.')[-1]}{short(v)}" for k, v in point.items()]
    return slug("-".join(parts)) or "point"


def point_names(points: list[dict]) -> list[str]:
    """point_name of each point, numbered where two would share one."""
    names = [point_name(p) for p in points]
    return [f"{n}-{i}" if names.count(n) > 1 else n for i, n in enumerate(names, 1)]


def run_point(out: Path, name: str, point: dict) -> dict:
    """Run one point (`forgetlab unlearn` in a child process), or read it back when an earlier run finished it."""
    previous, state = child_run(out / "runs", name)
    if state.get("status") in ("complete", "below bar"):
        row = point_row(name, point, state, previous)
        if state["status"] == "below bar":  # the reason, as the run that finished it said
            row["error"] = f"no checkpoint met the bar ({(state.get('kept') or {}).get('reason')})"
        return dict(row, seconds=None)
    ran = run_command(["unlearn", "--config", str(out / "configs" / f"{name}.yaml")], log=out / "logs" / f"{name}.log")
    run_dir, state = child_run(out / "runs", name)
    row = point_row(name, point, state, run_dir)
    status = "below bar" if state.get("status") == "below bar" else ran["status"]  # finished, kept nothing usable
    return dict(row, status=status, error=ran["error"], seconds=ran["seconds"])


def point_row(name: str, point: dict, state: dict, run_dir: Path | None) -> dict:
    checks = state.get("checks") or [{}]
    first, final = checks[0], state.get("final") or checks[-1]
    rtt = state.get("rtt") or {}
    kept = state.get("kept") or {}
    return {"point": name, **point, "status": state.get("status", "failed"), "lora_rank": state.get("lora_rank"),
            "method_name": state.get("method"),
            "forget_before": first.get("forget_ll"), "forget_after": final.get("forget_ll"),
            "retain_before": first.get("retain_ll"), "retain_after": final.get("retain_ll"),
            "general_before": first.get("general"), "general_after": final.get("general"),
            "kept_step": kept.get("step"), "acceptable": kept.get("acceptable"),
            "rtt_original": rtt.get("original"), "rtt_unlearned": rtt.get("unlearned"),
            "rtt_unlearned_rtt": rtt.get("unlearned_rtt"), "rtt_original_rtt": rtt.get("original_rtt"),
            "recovery_rate": rtt.get("recovery_rate"), "recovered_share": rtt.get("recovered_share"),
            "recovery_epoch": rtt.get("recovery_epoch"), "recovery_epoch_abs": rtt.get("recovery_epoch_abs"),
            **{k: final.get(k) for k in FIELDS}, "peak_memory_mb": state.get("peak_memory_mb"),
            "run_dir": str(run_dir) if run_dir else None, "error": None}


def by_rank(rows: list[dict]) -> list[dict]:
    """Mean, std (n − 1) and count of the RTT and accuracy figures per (method, LoRA rank), over finished points."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("status") == "complete":
            groups.setdefault((r.get("method_name"), r.get("lora_rank")), []).append(r)
    out = []
    for (method, rank), members in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), _rank_order(kv[0][1]))):
        row = {"method": method, "lora_rank": rank, "count": len(members)}
        for key in RANK_METRICS:
            values = [m[key] for m in members if m.get(key) is not None]
            row[f"{key}_mean"] = float(np.mean(values)) if values else None
            row[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
            if key in EPOCHS:
                row[f"{key}_count"] = len(values)
        out.append(row)
    return out


def _rank_order(rank) -> float:
    """Full weights (rank 0) after every LoRA rank."""
    return float("inf") if rank == 0 else float(rank or 0)


def rank_label(rank) -> str:
    return "full" if rank == 0 else str(rank)


def tables(cfg: SweepConfig, rows: list[dict], ranks: list[dict]) -> list[tuple[str, list[str], list[list]]]:
    def pm(r, key):
        mean, std = r.get(f"{key}_mean"), r.get(f"{key}_std")
        reached = f" ({r[f'{key}_count']} of {r['count']})" if key in EPOCHS else ""
        return ("-" if mean is None else fmt(mean) + (f" ± {fmt(std)}" if std is not None else "")) + reached

    rank_table = ("Recovery by LoRA rank (RTT: retraining on part of the forgotten facts; mean ± std over points)",
                  ["method", "LoRA rank", "points", "recovery rate", "recovered share",
                   "recovery epoch (0.8 × original; points reaching it)", "recovery epoch (V acc 0.8)",
                   "forget acc after", "retain acc after", "general after", "forget truth ratio", "model utility"],
                  [[r["method"], rank_label(r["lora_rank"]), r["count"]] + [pm(r, k) for k in RANK_METRICS]
                   for r in ranks])
    axes = list(cfg.axes)
    point_table = ("Points (acc: per-option log-likelihood on the forget / retain facts, before → after)",
                   ["point", *axes, "status", "forget acc", "retain acc", "general", "RTT V: unlearned → +RTT",
                    "recovery rate", "recovered share", "forget quality", "privleak", "time s"],
                   [[r["point"], *[r.get(a) for a in axes], r.get("status"),
                     f"{fmt(r.get('forget_before'))} → {fmt(r.get('forget_after'))}",
                     f"{fmt(r.get('retain_before'))} → {fmt(r.get('retain_after'))}", r.get("general_after"),
                     f"{fmt(r.get('rtt_unlearned'))} → {fmt(r.get('rtt_unlearned_rtt'))}", r.get("recovery_rate"),
                     r.get("recovered_share"), r.get("forget_quality"), r.get("privleak"),
                     None if r.get("seconds") is None else round(r["seconds"])] for r in rows])
    return [rank_table, point_table]


def finish(cfg: SweepConfig, out: Path, results: list[dict], status: str, console) -> None:
    """sweep.csv, recovery_vs_rank.csv, sweep.json, plots, report.html and the index row; printed with a console."""
    order = {name: i for i, name in enumerate(point_names(cfg.points()))}
    rows = sorted(results, key=lambda r: order.get(r["point"], len(order)))
    ranks = by_rank(rows)
    axes = list(cfg.axes)
    write_csv(out / "sweep.csv", ["point", *axes, *POINT_COLUMNS], [[r.get(k) for k in ["point", *axes, *POINT_COLUMNS]]
                                                                     for r in rows])
    header = ["method", "lora_rank", "count"] + [f"{k}_{s}" for k in RANK_METRICS
                                                 for s in ("mean", "std", *(("count",) if k in EPOCHS else ()))]
    write_csv(out / "recovery_vs_rank.csv", header, [[r.get(h) for h in header] for r in ranks])
    write_json(out / "sweep.json", {"status": status, "axes": cfg.axes, "points": rows, "recovery_vs_rank": ranks})
    failed = sum(r.get("status") != "complete" for r in rows)
    intro = (f"status: {status} · {len(rows)} of {len(order)} points finished, {failed} failed · axes: "
             + ", ".join(f"{k} = {v}" for k, v in cfg.axes.items()))
    write_page(out, f"forgetlab sweep: {out.name}", intro, tables(cfg, rows, ranks), plots(out, rows, ranks),
               settings={**{f"axis {k}": v for k, v in cfg.axes.items()},
                         **{f"unlearn {k}": v for k, v in cfg.unlearn.items()}},
               terms=["forget acc", "recovery rate", "recovered share", "truth ratio", "model utility", "forget quality",
                      "privleak"])
    best = min((r for r in ranks if r.get("recovery_rate_mean") is not None), key=lambda r: r["recovery_rate_mean"],
               default={})
    index_run(cfg.run.root, out, "sweep", out.name, status,
              {"points": len(rows), "failed": failed, "lowest_recovery_rank": best.get("lora_rank"),
               "lowest_recovery_rate": best.get("recovery_rate_mean")})
    if console:
        print_tables(console, tables(cfg, rows, ranks), first_left=True)
        for r in rows:
            if r.get("status") != "complete":
                console.print(f"[red]point {r['point']} failed[/red]: {r.get('error')} (log: {out / 'logs'})")


def plots(out: Path, rows: list[dict], ranks: list[dict]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    done = [r for r in rows if r.get("status") == "complete"]
    methods = list(dict.fromkeys(r["method"] for r in ranks))
    order = sorted({r["lora_rank"] for r in ranks}, key=_rank_order)
    xpos = {rank: i for i, rank in enumerate(order)}
    def by_rank_plot(series, ylabel, title, name, caption, unit=False):
        """Mean ± std of each (key, style, label) in `series` against the LoRA rank, one line per method."""
        fig, ax = plt.subplots(figsize=(7, 3.8))
        for j, method in enumerate(methods):
            for key, style, label in series:
                mine = [r for r in ranks if r["method"] == method and r.get(f"{key}_mean") is not None]
                ax.errorbar([xpos[r["lora_rank"]] + 0.04 * j for r in mine], [r[f"{key}_mean"] for r in mine],
                            yerr=[r[f"{key}_std"] or 0 for r in mine], fmt=style, capsize=3, label=f"{method}: {label}")
        ax.set_xticks(range(len(order)), [rank_label(r) for r in order])
        ax.set_xlabel("LoRA rank")
        ax.set_ylabel(ylabel)
        if unit:
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        ax.legend(fontsize=7)
        made.append(save_plot(fig, out / name, caption))

    if any(r.get("recovery_rate_mean") is not None for r in ranks):
        by_rank_plot([("recovery_rate", "-o", "recovery rate"), ("recovered_share", "--s", "recovered share")],
                     "RTT recovery", "How much retraining brings back, by LoRA rank (mean ± std)",
                     "recovery_vs_rank.png", "RTT recovery by LoRA rank")
    if done:
        by_rank_plot([("forget_after", "-o", "forget"), ("retain_after", "--s", "retain")],
                     "accuracy after unlearning", "Forget / retain trade-off by LoRA rank", "tradeoff.png",
                     "Forget and retain accuracy by LoRA rank", unit=True)

        fig, ax = plt.subplots(figsize=(7, 4.2))
        front = pareto_front(done)
        xs = [r["forget_after"] for r in done]
        ys = [r["retain_after"] for r in done]
        ax.scatter(xs, ys, c="lightgrey", edgecolors="grey", label="points")
        f = sorted(front, key=lambda r: r["forget_after"])
        ax.plot([r["forget_after"] for r in f], [r["retain_after"] for r in f], "-o", color="C3", label="Pareto front")
        for r in f:
            ax.annotate(r["point"], (r["forget_after"], r["retain_after"]), fontsize=7, xytext=(4, -8),
                        textcoords="offset points")
        ax.set_xlabel("forget accuracy after (lower is better)")
        ax.set_ylabel("retain accuracy after (higher is better)")
        ax.set_title("Pareto front: forgetting more without losing what should stay")
        ax.legend(fontsize=7)
        made.append(save_plot(fig, out / "pareto.png", "Pareto front of forget vs retain accuracy"))
    return made


def pareto_front(rows: list[dict]) -> list[dict]:
    """Points no other point beats on both counts (lower forget accuracy, higher retain accuracy)."""
    usable = [r for r in rows if r.get("forget_after") is not None and r.get("retain_after") is not None]

    def beats(a, b):
        return (a["forget_after"] <= b["forget_after"] and a["retain_after"] >= b["retain_after"]
                and (a["forget_after"] < b["forget_after"] or a["retain_after"] > b["retain_after"]))

    return [r for r in usable if not any(beats(o, r) for o in usable)]
