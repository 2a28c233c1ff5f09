"""The comparison table of `forgetlab compare`: aggregation over seeds, the CSV / Markdown / printed table and
report.html (the table, each strategy's accuracy matrix, a stability–plasticity scatter, loss histories)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..metrics.diagnostics import mean_spread
from ..report import fmt, markdown_table, save_plot, write_page
from ..runs import read_json, write_csv, write_text

COLUMNS = [  # (key, header)
    ("average_accuracy", "final avg acc"), ("bwt", "BWT"), ("max_forgetting", "max forgetting"),
    ("plasticity", "plasticity"), ("general_retention", "general retention"), ("task1_retention", "task-1 retention"),
    ("train_seconds", "train s"),
    ("peak_memory_mb", "peak MiB"), ("trainable_params", "trainable params"),
]


def run_numbers(metrics: dict) -> dict:
    """One run's headline numbers (on its first split, 'seen' for facts tasks)."""
    m = metrics["metrics"].get(metrics["splits"][0], {})
    forgetting = [f for f in m.get("forgetting", []) if f is not None and math.isfinite(f)]
    diag = metrics.get("diagnostics", {})
    general = [r for r in diag.get("general_retention", diag.get("base_retention", [])) if r is not None]
    task1 = [r for r in diag.get("task1_retention", []) if r is not None]
    return {"average_accuracy": m.get("average_accuracy"), "bwt": m.get("bwt"),
            "max_forgetting": max(forgetting) if forgetting else math.nan, "plasticity": m.get("plasticity"),
            "general_retention": general[-1] if general else math.nan,
            "task1_retention": task1[-1] if task1 else math.nan,
            "train_seconds": sum(c["train_seconds"] for c in metrics.get("checkpoints", [])),
            "peak_memory_mb": metrics.get("peak_memory_mb"), "trainable_params": metrics.get("trainable_params")}


def comparison_rows(strategies, results: list[dict]) -> list[dict]:
    """Per strategy: (mean, spread) of every column over its finished seeds, the failures, and ratios to naive."""
    rows = []
    for s in strategies:
        runs = [r for r in results if r["strategy"] == s]
        ok = [r for r in runs if r["status"] == "complete"]
        numbers = [run_numbers(read_json(Path(r["run_dir"]) / "metrics.json")) for r in ok]
        row = {"strategy": s, "runs": f"{len(ok)}/{len(runs)}", "errors": [r["error"] for r in runs if r["error"]]}
        for key, _ in COLUMNS:
            row[key] = mean_spread([n[key] if n[key] is not None else math.nan for n in numbers])
        rows.append(row)
    naive = next((r for r in rows if r["strategy"] == "naive"), None)
    for row in rows:
        base_bwt = abs(naive["bwt"][0]) if naive else math.nan
        base_pl = naive["plasticity"][0] if naive else math.nan
        row["bwt_vs_naive"] = abs(row["bwt"][0]) / base_bwt if base_bwt else math.nan
        row["plasticity_vs_naive"] = row["plasticity"][0] / base_pl if base_pl else math.nan
    return rows


WHOLE = {"train_seconds", "peak_memory_mb", "trainable_params"}  # shown without decimals


def cell(pair, key: str = "") -> str:
    mean, spread = pair
    if mean is None or not math.isfinite(mean):
        return "-"
    show = (lambda x: f"{x:.0f}") if key in WHOLE else fmt
    return show(mean) if spread < 1e-9 * max(1.0, abs(mean)) else f"{show(mean)} ± {show(spread)}"


def table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["strategy", "runs"] + [h for _, h in COLUMNS] + ["|BWT| / naive", "plasticity / naive", "errors"]
    body = [[r["strategy"], r["runs"]] + [cell(r[k], k) for k, _ in COLUMNS]
            + [fmt(r["bwt_vs_naive"]), fmt(r["plasticity_vs_naive"]), "; ".join(r["errors"])[:200]] for r in rows]
    return header, body


def print_comparison(console, rows: list[dict]) -> None:
    from rich.table import Table

    header, body = table(rows)
    t = Table(title="Comparison (mean ± std over seeds; accuracies on the trained questions)", title_justify="left")
    for h in header:
        t.add_column(h, justify="left" if h in ("strategy", "errors") else "right")
    for b in body:
        t.add_row(*b)
    console.print(t)


def write_comparison(out: Path, cfg, rows: list[dict], results: list[dict], status: str) -> None:
    """comparison.csv (means and spreads as numbers), comparison.md and report.html with its plots."""
    keys = [k for k, _ in COLUMNS]
    write_csv(out / "comparison.csv", ["strategy", "runs"] + [f"{k}_{p}" for k in keys for p in ("mean", "std")]
              + ["bwt_vs_naive", "plasticity_vs_naive", "errors"],
              [[r["strategy"], r["runs"]] + [v for k in keys for v in r[k]]
               + [r["bwt_vs_naive"], r["plasticity_vs_naive"], "; ".join(r["errors"])] for r in rows])
    header, body = table(rows)
    write_text(out / "comparison.md", markdown_table(header, body) + "\n")
    plots = comparison_plots(out, rows, results)
    first = {}
    for r in results:
        if r["status"] == "complete":
            first.setdefault(r["strategy"], Path(r["run_dir"]))
    links = [(f"{s}: accuracy matrix (seed {read_json(run / 'metrics.json')['seed']})",
              f"{run.relative_to(out)}/report.html", f"{run.relative_to(out)}/accuracy_matrix.png")
             for s, run in first.items() if (run / "accuracy_matrix.png").is_file()]
    write_page(out, f"forgetlab compare: {out.name}", f"status: {status} · tasks: {', '.join(cfg.tasks)} · seeds: "
               f"{list(cfg.seeds)}", [("Comparison", header, body)], plots, links,
               settings={"strategies": cfg.strategies, "seeds": cfg.seeds, "tasks": cfg.tasks, "train.lr": cfg.train.lr,
                         "train.epochs": cfg.train.epochs, "lora.rank": cfg.lora.rank, "model.name": cfg.model.name},
               terms=["average accuracy", "BWT", "plasticity", "forgetting", "general retention", "task-1 retention"])


def comparison_plots(out: Path, rows: list[dict], results: list[dict]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    # Stability–plasticity: forgetting against plasticity, one point per strategy.
    pts = [(r["strategy"], r["plasticity"][0], r["max_forgetting"][0]) for r in rows
           if np.isfinite(r["plasticity"][0]) and np.isfinite(r["max_forgetting"][0])]
    if pts:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for name, x, y in pts:
            ax.scatter([x], [y])
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("plasticity (accuracy right after learning each task)")
        ax.set_ylabel("largest forgetting")
        ax.set_title("Stability–plasticity (right and low is better)")
        made.append(save_plot(fig, out / "stability_plasticity.png", "Stability–plasticity"))
    # Loss histories overlaid: the first finished seed of each strategy.
    fig, ax = plt.subplots(figsize=(8, 3.5))
    drawn = set()
    for r in results:
        if r["status"] != "complete" or r["strategy"] in drawn:
            continue
        hist = read_json(Path(r["run_dir"]) / "metrics.json")["history"]
        if hist:
            drawn.add(r["strategy"])
            ax.plot([h["global_step"] for h in hist], [h["loss"] for h in hist], lw=1, label=r["strategy"])
    if drawn:
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.set_title("Training loss of each strategy (first seed)")
        ax.legend(fontsize=8)
        made.append(save_plot(fig, out / "losses.png", "Loss histories"))
    else:
        plt.close(fig)
    return made
