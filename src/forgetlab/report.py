"""What a person looks at: the live progress bar, the printed tables, and report.html with its PNG plots."""

from __future__ import annotations

import html
import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .runs import atomic_file, write_text


def count_progress(console: Console | None, disable: bool = False) -> Progress:
    """A rich progress bar over counted items (grid points, online-eval turns): description, bar, done/total, time
    taken and time left. Without a console it draws on stderr."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("left"), TimeRemainingColumn(), console=console or Console(stderr=True),
                    disable=disable)


class StepProgress:
    """A rich progress bar per task showing loss, tokens/s and time left."""

    def __init__(self, console: Console | None):
        self.console = console or Console(stderr=True)

    @contextmanager
    def task(self, label: str, total: int):
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}  {task.fields[tps]} tok/s"), TimeElapsedColumn(),
                   TextColumn("left"), TimeRemainingColumn()]
        with Progress(*columns, console=self.console, transient=False) as bar:
            tid = bar.add_task(label, total=total, loss="-", tps="-")

            def tick(row: dict) -> None:
                bar.update(tid, advance=1, loss=f"{row['loss']:.3f}", tps=f"{row['tokens_per_s']:.0f}")

            yield tick


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if abs(x) < 1e-9:  # rounding noise of a difference (6.66e-16) reads as the zero it is
            return f"{0.0:.{digits}f}"
        return f"{x:.{digits}g}" if abs(x) >= 1e4 or abs(x) < 1e-3 else f"{x:.{digits}f}"
    return str(x)


def gated_stages(state: dict) -> list[tuple[str, dict]]:
    """The stages after which a gated strategy saved its gate values: (stage, that stage's method_info)."""
    return [(stage, info) for stage, info in zip(state["stages"][1:], state.get("method_info", []), strict=False)
            if info.get("gates_by_task")]


def summary_tables(state: dict, detail: bool = False) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) for each table the run ends with; shared by the terminal and report.html (`detail`:
    also the first items that flipped at each boundary, with their questions)."""
    tasks, splits = state["tasks"], state["splits"]
    chance = {t: state["accuracy"][0][t].get(splits[0], {}).get("chance") for t in tasks}
    acc = [[stage] + [row[t].get(s, {}).get("accuracy") for t in tasks for s in splits]
           for stage, row in zip(state["stages"], state["accuracy"], strict=False)]
    acc.append(["(chance)"] + [chance[t] for t in tasks for _ in splits])
    out = [("Accuracy matrix", ["stage"] + [f"{t} {s}" for t in tasks for s in splits], acc)]
    if state.get("metrics"):
        rows = []
        for s, m in state["metrics"].items():
            rows.append([s, m["average_accuracy"], m["bwt"], m["fwt"], m["plasticity"]]
                        + [m["forgetting"][k] for k in range(len(tasks))])
        out.append(("Continual metrics (per split)", ["split", "avg acc", "BWT", "FWT", "plasticity"]
                    + [f"forgetting {t}" for t in tasks], rows))
    if state.get("curriculum"):
        out.append(("Curriculum: each stage's task mix (share of the stage's examples)", ["stage", *tasks],
                    [[f"stage {k}", *[mix.get(t) for t in tasks]] for k, mix in enumerate(state["curriculum"], 1)]))
    out += flip_tables(state, detail)
    cks = state.get("checkpoints", [])
    if cks:
        k = max((len(c["eigenvalues"]) for c in cks), default=0)
        out.append((f"Checkpoints: loss, the top {k} Hessian eigenvalues (landscape.top_k), displacement from the "
                    "previous stage",
                    ["checkpoint", "own loss", "||Δθ||", "||ΔW||", "train s", "evaluate s", "landscape s",
                     "Lanczos its"] + [f"λ{r + 1}" for r in range(k)],
                    [[c["task"], c["loss"], c["dtheta_prev"], c["dW_prev"], c["train_seconds"], c.get("eval_seconds"),
                      c.get("landscape_seconds"), c.get("lanczos_iterations")]
                     + (c["eigenvalues"] + [None] * k)[:k] for c in cks]))
    diag = state.get("diagnostics")
    if diag:
        spikes = {d["task"]: d for d in diag["spikes"]}
        stalls = {d["task"]: d["step"] for d in diag["stagnation"]}
        rows = []
        for k, stage in enumerate(state["stages"]):
            task = stage.removeprefix("after ")
            spike = spikes.get(task)
            rows.append([stage, spike["factor"] if spike else None,
                         ("SPIKE" if spike["flagged"] else "ok") if spike else None,
                         stalls.get(task, "-") if k else None,
                         _at(diag["general_accuracy"], k), _at(diag.get("general_retention"), k),
                         _at(diag.get("task1_retention"), k)])
        out.append(("Diagnostics: loss spike at each boundary, stagnation; general retention (the general questions "
                    "against the base model) and task-1 retention (the first task against its accuracy right after "
                    "it was learned)",
                    ["stage", "spike factor", "spike", "stagnant from step", "general acc", "general retention",
                     "task-1 retention"], rows))
    gated = gated_stages(state)
    if gated:
        tasks = state["tasks"]
        out.append(("Gates: the new adapter's mean gate over each task's inputs (1: the new adapter, 0: the earlier model)",
                    ["stage", "gate of"] + [f"{t} inputs" for t in tasks],
                    [[stage, info["gate_adapter"]] + [info["gates"].get(t) for t in tasks] for stage, info in gated]))
    if state.get("estimates"):
        out.append(("Forgetting: second-order estimate against the measured loss increase",
                    ["task", "after", "||Δθ||", "||ΔW||", "λ_max", "½ΔθᵀHΔθ", "½λ_max||Δθ||²", "measured ΔL",
                     "ΔL ≤ bound"],
                    [[e["task"], e["after"], e["dtheta"], e["dW"], e["lambda_max"], e["quadratic"], e["bound"],
                      e["loss_increase"], e["bound_held"]] for e in state["estimates"]]))
    return out


FIRST_FLIPS = 5
"""The flipped items the report lists per boundary, task, split and direction."""


def flip_tables(state: dict, detail: bool) -> list[tuple[str, list[str], list[list]]]:
    """The items that changed at each stage boundary: counts, and (`detail`) the first few with their question and
    the answer before → after."""
    rows = state.get("flips") or []
    if not rows:
        return []
    out = [("Items that changed at each boundary (right → wrong, wrong → right; predictions.csv has every item)",
            ["after", "task", "split", "items", "right → wrong", "wrong → right", "accuracy change"],
            [[r["stage"].removeprefix("after "), r["task"], r["split"], r["items"], len(r["lost"]), len(r["gained"]),
              (len(r["gained"]) - len(r["lost"])) / r["items"]] for r in rows])]
    if detail:
        stage_of = {stage: k for k, stage in enumerate(state["stages"])}
        preds, questions, listed = state["predictions"], state.get("questions") or {}, []
        for r in rows:
            k = stage_of[r["stage"]]
            for direction, items in (("right → wrong", r["lost"]), ("wrong → right", r["gained"])):
                for i in items[:FIRST_FLIPS]:
                    q = (questions.get(r["task"], {}).get(r["split"]) or [""] * (i + 1))[i]
                    before, after = (preds[j][r["task"]][r["split"]][i]["answer"] for j in (k - 1, k))
                    listed.append([r["stage"].removeprefix("after "), r["task"], r["split"], i, direction,
                                   q if len(q) <= 120 else q[:117] + "...", f"{before} → {after}"])
        out.append((f"The first {FIRST_FLIPS} flipped items each way, per boundary",
                    ["after", "task", "split", "item", "flip", "question", "answer"], listed))
    return out


def _at(values: list, k: int):
    return values[k] if values and k < len(values) else None


def print_summary(console: Console | None, state: dict) -> None:
    print_tables(console, summary_tables(state))


def print_tables(console: Console | None, tables: list[tuple[str, list[str], list[list]]],
                 first_left: bool = True) -> None:
    """Print (title, header, rows) tables; the first column left-aligned unless `first_left` is False."""
    console = console or Console()
    for title, header, rows in tables:
        table = Table(title=title, title_justify="left")
        for k, h in enumerate(header):
            table.add_column(h, justify="left" if k == 0 and first_left else "right")
        for r in rows:
            table.add_row(*[fmt(v) for v in r])
        console.print(table)


def _plots(run_dir: Path, state: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    splits = state["splits"]
    tasks = state["tasks"]
    # Accuracy matrix heatmap.
    R = np.array([[row[t].get(s, {}).get("accuracy", np.nan) if row[t].get(s, {}).get("accuracy") is not None
                   else np.nan for t in tasks for s in splits] for row in state["accuracy"]], dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * R.shape[1], 1.2 + 0.6 * R.shape[0]))
    im = ax.imshow(R, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(R.shape[1]), [f"{t}\n{s}" for t in tasks for s in splits], fontsize=8, rotation=30, ha="right")
    ax.set_yticks(range(R.shape[0]), state["stages"], fontsize=8)
    for (a, b), v in np.ndenumerate(R):
        ax.text(b, a, "-" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k")
    fig.colorbar(im, ax=ax, label="accuracy")
    ax.set_title("Accuracy after each stage")
    made.append(save_plot(fig, run_dir / "accuracy_matrix.png", "Accuracy matrix"))
    # Loss curve with task boundaries.
    hist = state["history"]
    if hist:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.plot([h["global_step"] for h in hist], [h["loss"] for h in hist], lw=1)
        flagged = {d["task"] for d in (state.get("diagnostics") or {}).get("spikes", []) if d["flagged"]}
        for stage in state["stages"][2:]:
            t = stage.removeprefix("after ")
            first = next((h for h in hist if h["task"] == t), None)
            if first is not None:
                ax.axvline(first["global_step"] - 0.5, color="red", ls="--", lw=1)
                ax.text(first["global_step"], ax.get_ylim()[1], t, color="red", fontsize=8, va="top")
                if t in flagged:
                    ax.plot([first["global_step"]], [first["loss"]], "r^", ms=10, label=f"loss spike: {t}")
        if flagged:
            ax.legend(fontsize=8)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.set_title("Training loss (dashed: task boundaries; triangles: flagged spikes)")
        made.append(save_plot(fig, run_dir / "loss.png", "Loss curve"))
    # Eigenvalue spectrum per checkpoint.
    cks = [c for c in state.get("checkpoints", []) if c["eigenvalues"]]
    if cks:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for c in cks:
            ax.plot(range(1, len(c["eigenvalues"]) + 1), c["eigenvalues"], marker="o", label=c["task"])
        top = max(len(c["eigenvalues"]) for c in cks)
        ax.set_xticks(range(1, top + 1))  # whole indices: the i-th largest eigenvalue, not a LoRA rank
        ax.set_xlabel("eigenvalue index (1 = largest)")
        ax.set_ylabel("Hessian eigenvalue")
        ax.set_title(f"Top {top} Hessian eigenvalues at each task's checkpoint (landscape.top_k)")
        ax.legend(fontsize=8)
        made.append(save_plot(fig, run_dir / "eigenvalues.png", "Eigenvalue spectrum"))
    gates = gated_stages(state)
    if gates:
        fig, axes = plt.subplots(1, len(gates), figsize=(5 * len(gates), 3.5), squeeze=False, sharey=True)
        for ax, (stage, info) in zip(axes[0], gates, strict=True):
            for task, values in info["gates_by_task"].items():
                ax.plot(range(len(values)), values, marker=".", lw=1, label=f"{task} inputs")
            ax.set_xlabel("adapted layer (model order)")
            ax.set_ylim(0, 1)
            ax.set_title(f"{info['gate_adapter']} gate, {stage}", fontsize=9)
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("mean gate g (1: new adapter)")
        made.append(save_plot(fig, run_dir / "gates.png", "Gate values per task's inputs"))
    return made


def save_plot(fig, path: Path, title: str) -> tuple[str, str]:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_file(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path.name, title


def html_table(title: str, header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def write_report(run_dir: Path, state: dict) -> Path:
    """report.html beside its PNG plots; returns its path."""
    plots = _plots(run_dir, state)
    intro = (f"status: {state.get('status', '?')} · tasks: {', '.join(state['tasks'])} · trainable parameters: "
             f"{state.get('trainable_params', '?')}")
    settings = settings_of(run_dir, ["tasks", "strategy.name", "train.lr", "train.epochs", "train.batch_size",
                                     "train.seed", "lora.rank", "lora.alpha", "lora.targets", "landscape.enabled",
                                     "model.name"])
    terms = ["accuracy", "average accuracy", "BWT", "FWT", "plasticity", "forgetting", "spike factor",
             "general retention", "task-1 retention"] + (["bound"] if state.get("estimates") else [])
    return write_page(run_dir, f"forgetlab {state['kind']}: {run_dir.name}", intro, summary_tables(state, detail=True),
                      plots, settings=settings, terms=terms)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-style markdown table (cells formatted as in the printed tables)."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows])


TERMS = {
    "accuracy": "share of a task's questions answered right: the option letter with the highest logit (MCQ), or a "
                "greedy answer containing the reference (QA).",
    "average accuracy": "mean over tasks of the last row of the accuracy matrix R (R[i, j]: task j after stage i).",
    "BWT": "backward transfer, mean over tasks j < T of R[T, j] − R[j, j]: negative when later stages made earlier "
           "tasks worse.",
    "FWT": "forward transfer, mean over tasks j > 1 of R[j − 1, j] − R[0, j]: what a task gained before it was "
           "trained.",
    "plasticity": "mean over tasks of R[j, j], each task's accuracy right after its own stage.",
    "forgetting": "per task, its best accuracy after an earlier stage minus its last.",
    "spike factor": "the mean loss of the first steps of a stage over the mean of the last steps of the stage "
                    "before (diagnostics.spike_window): how hard the new task hits.",
    "general retention": "the general score (the share of the 28 built-in general questions answered, or the mean "
                         "score of general.lm_eval's tasks) over the base model's.",
    "task-1 retention": "task 1's accuracy after a stage over its accuracy right after task 1 was learned.",
    "bound": "½ λ_max ||Δθ||²: the second-order bound on a task's loss increase, with λ_max the top Hessian "
             "eigenvalue at its checkpoint and Δθ the adapter's move since.",
    "forget acc": "share of forget facts whose correct option has the highest log-likelihood as a plain-text "
                  "continuation (lm-evaluation-harness's multiple-choice scoring).",
    "forget QA": "share of forget questions whose greedy chat answer contains the answer.",
    "truth ratio": "TOFU: P(wrong answers) / P(correct answer), length-normalised probabilities, geometric mean over "
                   "the wrong ones; the forget column shows mean(min(tr, 1/tr)) (1: no preference left).",
    "forget quality": "the p-value of a two-sample KS test between the forget facts' truth ratios and a reference "
                      "model's that never saw them (high: indistinguishable).",
    "model utility": "harmonic mean of the retain set's answer probability, ROUGE-L recall and truth ratio "
                     "(aggregated as mean(max(0, 1 − tr)): higher = still prefers the truth).",
    "privleak": "MUSE: ((1 − AUC) − (1 − AUC_ref)) / (1 − AUC_ref) × 100, AUC of the min-k% membership test of "
                "forget vs holdout facts against the reference model's (0: the goal; negative: under-unlearned, "
                "positive: over-unlearned).",
    "recovery rate": "RTT: accuracy on the held-out forget facts V after retraining on the others, over the "
                     "original model's accuracy on V after the same retraining.",
    "recovered share": "RTT: (unlearned + RTT − unlearned) / (original − unlearned): the share of what unlearning "
                       "removed that retraining brings back.",
    "comes back": "an attack's share of the forget accuracy unlearning removed that it restores.",
    "recall": "sessions: share of a session's check questions whose greedy answer contains the reference answer.",
    "lowest share kept": "sessions: the worst, over earlier sessions, of their recall after a later session over "
                         "their recall right after their own.",
    "general": "share of the 28 built-in general questions (capitals, arithmetic, ...) answered right.",
    "reliability": "online: share of a fact's trained question forms answered with it (edits: teacher-forced token "
                   "accuracy of the new answer after the edit prompt, as EasyEdit defines it).",
    "generalisation": "the same on paraphrased questions that were never trained.",
    "locality": "share of unrelated answers' tokens the model still predicts as the starting model did (argmax "
                "agreement, EasyEdit's definition); 1: nothing unrelated changed.",
}
"""One sentence (with its formula) per metric a report may show; each page lists the ones it uses."""


ONLINE_SETTINGS = ["model.name", "lora.rank", "lora.top_layers", "update.lr", "update.steps", "update.rehearse",
                   "gate.enabled", "route", "seed"]
"""The online learner's settings a report shows at the top."""


def settings_of(run_dir: Path, keys: list[str]) -> dict:
    """The chosen dotted keys of the run's config.yaml (absent keys left out): a report's settings summary."""
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    out = {}
    for key in keys:
        value = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            out[key] = ", ".join(map(str, value)) if isinstance(value, list) else value
    return out


def _inline(path: Path) -> str:
    """A PNG as a data: URI, so the page needs no file beside it (a missing file stays a plain link)."""
    import base64

    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}" if path.is_file() else path.name


def write_page(run_dir: Path, title: str, intro: str, tables: list[tuple[str, list[str], list[list]]],
               plots: list[tuple[str, str]], links: list[tuple[str, str, str]] = (), settings: dict | None = None,
               terms: list[str] = ()) -> Path:
    """`run_dir`/report.html, one page that stands alone (its pictures inlined): a title, a line of text, the
    settings that produced it, tables (title, header, rows), plots (file, title), linked pictures of other pages
    (title, page, picture; paths relative to `run_dir`, e.g. a grid's child runs) and the definitions of `terms`
    (keys of TERMS)."""
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p class='intro'>{html.escape(intro)}</p>"]
    if settings:
        parts.append(html_table("Settings", ["setting", "value"],
                                [[k, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v]
                                 for k, v in settings.items()]))
    parts += [html_table(*t) for t in tables]
    named = {t[0] for t in tables}  # a plot of a table has a heading of its own
    parts += [f"<h2>{html.escape(t + (' (plot)' if t in named else ''))}</h2><img src='{_inline(run_dir / name)}' "
              f"alt='{html.escape(t)}'>" for name, t in plots]
    parts += [f"<h2>{html.escape(t)}</h2><a href='{page}'><img src='{_inline(run_dir / img)}' alt='{html.escape(t)}'></a>"
              for t, page, img in links]
    if terms:
        parts.append("<h2>Definitions</h2><dl>" + "".join(f"<dt>{html.escape(t)}</dt><dd>{html.escape(TERMS[t])}</dd>"
                                                          for t in terms) + "</dl>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}h1{font-size:1.5em;border-bottom:"
             "3px solid #3b6ea5;padding-bottom:.2em}h2{font-size:1.15em;margin-top:1.4em}.intro{color:#555}"
             "table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#eef2f7}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
             "dl{background:#f6f6f6;padding:.5em 1em}dt{font-weight:bold}dd{margin:0 0 .4em 1em}")
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    write_text(run_dir / "report.html", page)
    return run_dir / "report.html"
