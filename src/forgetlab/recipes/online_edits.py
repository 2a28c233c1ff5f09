"""`forgetlab online-eval --edits FILE`: the online learner as a lifelong editor, scored as EasyEdit scores editors.

Reads top to bottom: read the edit records (zsRE / CounterFact, online/edits.py) → load the model, start a learner
(fresh state in the run directory) → the unedited model's argmax tokens on every locality prompt → apply the edits
one after another through the learner's fact path, after each one scoring every edit so far (reliability,
generalisation, locality: metrics/editing.py) → at the end the generation view (greedy chat answers), the
later-edit-wins check for re-edited subjects, the cost per edit → with --baselines the same stream through plain
fine-tuning of the same adapter, and retrieval (the stored edits in the prompt, no weight change) → table,
edits.csv, curve.csv, curve.png, metrics.json, report.html.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from ..config import OnlineConfig, dump_yaml
from ..data.records import Example, user
from ..evaluate import answer_labels, argmax_tokens, generate_answers
from ..metrics.editing import agreement, mean, token_accuracy
from ..metrics.qa import contains
from ..model import load_base
from ..online.edits import EditRecord, EditRows, teacher_forced_row
from ..online.learner import OnlineLearner
from ..online.route import routes
from ..report import ONLINE_SETTINGS, count_progress, fmt, save_plot, settings_of, write_page
from ..runs import index_run, new_run_dir, write_csv, write_json, write_text
from ..sessions.holder import Loaded, ModelHolder

TABLE_AT = (1, 10)
"""The T at which the table reports the metrics, besides after every edit."""

FINE_TUNE = {"update.rehearse": 0, "update.kl": 0.0, "update.kl_fact": 0.0, "update.kl_important": 0.0,
             "gate.enabled": False, "memory.replay_every": 0, "route": "always"}
"""The plain fine-tuning baseline (EasyEdit's FT-L in spirit): the same adapter and steps on each edit alone —
no rehearsal, no KL, no gate, no replay, no router."""


def online_edits(cfg: OnlineConfig, records: list[EditRecord], root: str | Path, name: str = "online-edits",
                 baselines: bool = False, console=None) -> dict:
    """Run the edit stream (and the baselines); return the summary (also in `<run>/metrics.json`)."""
    run = new_run_dir(root, name)
    write_text(run / "config.yaml", dump_yaml(cfg))
    results = {"forgetlab": edit_stream(cfg, records, run / "state", console, "edits")}
    if baselines:
        from ..config.parse import set_dotted

        data = cfg.model_dump(mode="json")
        for key, value in FINE_TUNE.items():
            set_dotted(data, key, value)
        results["fine-tune"] = edit_stream(OnlineConfig.model_validate(data), records, run / "fine-tune-state", console,
                                           "fine-tune baseline")
        results["retrieval"] = retrieval(cfg, records, console)
    summary = {k: v["summary"] for k, v in results.items()}
    write_outputs(run, records, results)
    index_run(root, run, "online-edits", run.name, "complete", summary["forgetlab"])
    print_edits(console, results, run)
    return summary


# ------------------------------------------------------------------------------------------------- the edit stream

def edit_stream(cfg: OnlineConfig, records: list[EditRecord], state_dir: Path, console, label: str) -> dict:
    holder = ModelHolder(lambda: Loaded(*load_base(cfg.model), "base", None, time.time()))
    learner = OnlineLearner(holder, cfg, state_dir)
    tok = learner.tok
    rows = EditRows.of(tok, records)
    before = holder.update(lambda _: argmax_tokens(learner.model, tok, [r for rs in rows.locality for r in rs]))
    before = unflatten(before, rows.locality)
    curve, per_edit = [], []
    with count_progress(console, disable=console is None) as bar:
        for t, rec in bar.track(list(enumerate(records, 1)), description=label):
            result = learner.edit(rec, turn=t)
            up = result.updates[0]
            per_edit.append({"seconds": sum(u.seconds for u in result.updates), "kept": up.kept,
                             "learned": bool(up.learned)})
            final = holder.update(lambda _, t=t: score_edits(learner, records[:t], rows, before))
            curve.append({"T": t, **averages(final, current(records[:t]))})
    gen = holder.update(lambda _: generation_view(learner.generate, records, cfg.gate.check_tokens))
    wins = later_wins(records, gen["answers"])
    for row, s, g, hit in zip(per_edit, final, gen["answers"], gen["hits"], strict=True):
        row.update(s, answer=g[0], answer_hit=hit)
    seconds = [r["seconds"] for r in per_edit]
    live = current(records)
    summary = {**averages(final, live), "answers": mean([h for h, x in zip(gen["hits"], live, strict=True) if x]),
               "rephrase_answers": gen["rephrase"],
               "later_wins": wins["share"], "later_wins_n": wins["n"], "median_edit_s": statistics.median(seconds),
               "edits_undone": sum(not r["kept"] for r in per_edit), "edits": len(records)}
    return {"summary": summary, "curve": curve, "per_edit": per_edit, "later": wins["rows"]}


def score_edits(learner: OnlineLearner, records: list[EditRecord], rows: EditRows, before: list[list[list[int]]]
                ) -> list[dict]:
    """Per edit (of `records`): reliability, generalisation, locality, every row routed as the learner routes it."""
    def predict(flat, texts):
        return learner.by_route(texts, lambda idx: argmax_tokens(learner.model, learner.tok, [flat[k] for k in idx]))

    def row(i, kind, j, _q, _a):
        return {"reliability": [rows.reliability[i]], "generalisation": rows.generalisation[i],
                "locality": rows.locality[i]}[kind][j]

    return scored(records, row, predict, before)


def scored(records: list[EditRecord], row, predict, before: list[list[list[int]]]) -> list[dict]:
    """The three metrics per edit, from one batched teacher-forced pass: `row(i, kind, j, prompt, answer)` is the
    encoded row of edit i's j-th prompt of that kind, `predict(rows, prompts)` the argmax tokens of each."""
    flat, texts, where = [], [], []
    for i, rec in enumerate(records):
        for kind, pairs in (("reliability", [(rec.prompt, rec.target)]),
                            ("generalisation", [(q, rec.target) for q in rec.rephrases]),
                            ("locality", list(rec.locality))):
            for j, (q, a) in enumerate(pairs):
                flat.append(row(i, kind, j, q, a))
                texts.append(q)
                where.append((i, kind, j))
    got: dict = {}
    for (i, kind, j), pred, lab in zip(where, predict(flat, texts), answer_labels(flat), strict=True):
        got.setdefault((i, kind), []).append(agreement(before[i][j], pred) if kind == "locality"
                                             else token_accuracy(pred, lab))
    return [{k: mean(got.get((i, k), [])) for k in ("reliability", "generalisation", "locality")}
            for i in range(len(records))]


def current(records: list[EditRecord]) -> list[bool]:
    """Per record: is it the last edit of its key so far? An earlier edit of a re-edited subject is superseded:
    its prompts should now give the later value, which `later_wins` checks, so the averages leave it out."""
    last = {r.key: i for i, r in enumerate(records)}
    return [last[r.key] == i for i, r in enumerate(records)]


def averages(scores: list[dict], live: list[bool] | None = None) -> dict:
    """Mean of each metric over the edits (those `live` marks, when given)."""
    use = [s for s, x in zip(scores, live or [True] * len(scores), strict=True) if x]
    return {k: mean([s[k] for s in use if s[k] is not None]) for k in ("reliability", "generalisation", "locality")}


def unflatten(values: list, shape: list[list]) -> list[list]:
    out, at = [], 0
    for part in shape:
        out.append(values[at:at + len(part)])
        at += len(part)
    return out


def generation_view(generate, records: list[EditRecord], tokens: int) -> dict:
    """Greedy chat answers to every edit's prompt and rephrases; a hit when the answer holds the new target."""
    asked = [(i, q) for i, r in enumerate(records) for q in (r.prompt, *r.rephrases)]
    answers = generate([Example(user(q), "") for _, q in asked], tokens)
    per: list[list[str]] = [[] for _ in records]
    for (i, _), a in zip(asked, answers, strict=True):
        per[i].append(a)
    hits = [contains(a[0], r.target) for a, r in zip(per, records, strict=True)]
    live = current(records)
    rephrase = [contains(x, r.target) for a, r, x_live in zip(per, records, live, strict=True) if x_live for x in a[1:]]
    return {"answers": per, "hits": hits, "rephrase": mean(rephrase)}


def later_wins(records: list[EditRecord], answers: list[list[str]]) -> dict:
    """For every subject edited more than once: do the answers to all its prompts (every edit's prompt and
    rephrases) hold the last edit's target and none of the earlier ones?"""
    by_key: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_key.setdefault(r.key, []).append(i)
    rows = []
    for idx in (v for v in by_key.values() if len(v) > 1):
        last, earlier = records[idx[-1]].target, [records[i].target for i in idx[:-1]]
        said = [a for i in idx for a in answers[i]]
        ok = [contains(a, last) and not any(contains(a, e) for e in earlier) for a in said]
        rows.append({"subject": records[idx[-1]].subject, "later": last, "earlier": " / ".join(earlier),
                     "prompts": len(said), "later_wins": mean(ok)})
    return {"rows": rows, "n": len(rows), "share": mean([r["later_wins"] for r in rows])}


# ------------------------------------------------------------------------------------------- the retrieval baseline

def retrieval(cfg: OnlineConfig, records: list[EditRecord], console) -> dict:
    """No weight change: each prompt is preceded by the stored edits that name its subject (the latest edit per
    key), "Fact: <prompt> <answer>" per line; scored at T = 1, 10 and all."""
    model, tok = load_base(cfg.model)
    plain = EditRows.of(tok, records)
    before = unflatten(argmax_tokens(model, tok, [r for rs in plain.locality for r in rs]), plain.locality)
    curve = []
    for t in sorted({*[x for x in TABLE_AT if x < len(records)], len(records)}):
        scores = retrieval_scores(model, tok, records, t, before)
        curve.append({"T": t, **averages(scores, current(records[:t]))})
    memory = latest(records)
    gen = generation_view(lambda ex, n: generate_answers(model, tok, [with_facts(e, memory) for e in ex], n, 64),
                          records, cfg.gate.check_tokens)
    wins = later_wins(records, gen["answers"])
    summary = {**curve[-1], "answers": mean([h for h, x in zip(gen["hits"], current(records), strict=True) if x]),
               "rephrase_answers": gen["rephrase"],
               "later_wins": wins["share"], "later_wins_n": wins["n"], "median_edit_s": 0.0, "edits_undone": 0,
               "edits": len(records)}
    summary.pop("T")
    return {"summary": summary, "curve": curve, "per_edit": scores, "later": wins["rows"]}


def latest(records: list[EditRecord]) -> dict[str, EditRecord]:
    out: dict[str, EditRecord] = {}
    for r in records:
        out[r.key] = r
    return out


def recalled(text: str, memory: dict[str, EditRecord]) -> str:
    facts = [f"Fact: {r.prompt} {r.target}" for r in memory.values() if routes(text, [r.subject])]
    return "".join(f + "\n" for f in facts)


def with_facts(ex: Example, memory: dict[str, EditRecord]) -> Example:
    q = ex.messages[-1]["content"]
    return Example(user(recalled(q, memory) + q), ex.target)


def retrieval_scores(model, tok, records: list[EditRecord], t: int, before) -> list[dict]:
    memory = latest(records[:t])
    return scored(records[:t], lambda i, kind, j, q, a: teacher_forced_row(tok, recalled(q, memory) + q, a),
                  lambda flat, _: argmax_tokens(model, tok, flat), before)


# -------------------------------------------------------------------------------------------------------- outputs

COLUMNS = ("reliability", "generalisation", "locality", "answers", "later_wins", "median_edit_s", "edits_undone")


def table_rows(results: dict) -> list[list]:
    """One row per method and T (1, 10, all): the teacher-forced metrics at T, the rest at the end."""
    rows = []
    for name, res in results.items():
        n = res["summary"]["edits"]
        for c in res["curve"]:
            if c["T"] in TABLE_AT or c["T"] == n:
                end = c["T"] == n
                rows.append([name, c["T"], c["reliability"], c["generalisation"], c["locality"],
                             *([res["summary"][k] for k in COLUMNS[3:]] if end else [None] * 4)])
    return rows


def write_outputs(run: Path, records: list[EditRecord], results: dict) -> None:
    main = results["forgetlab"]
    header = ["T", "subject", "target", "superseded", "reliability", "generalisation", "locality", "answer",
              "answer_hit", "seconds", "kept", "learned"]
    live = current(records)
    write_csv(run / "edits.csv", header,
              [[t, r.subject, r.target, int(not live[t - 1]), e["reliability"], e["generalisation"], e["locality"],
                e["answer"], int(e["answer_hit"]), round(e["seconds"], 3), int(e["kept"]), int(e["learned"])]
               for t, (r, e) in enumerate(zip(records, main["per_edit"], strict=True), 1)])
    write_csv(run / "curve.csv", ["method", "T", "reliability", "generalisation", "locality"],
              [[name, c["T"], c["reliability"], c["generalisation"], c["locality"]]
               for name, res in results.items() for c in res["curve"]])
    write_json(run / "metrics.json", {k: {"summary": v["summary"], "curve": v["curve"], "later": v["later"]}
                                      for k, v in results.items()})
    head = ["method", "T", *COLUMNS]
    write_page(run, f"forgetlab online-eval --edits: {run.name}",
               f"{len(records)} edits applied one after another; reliability / generalisation / locality as EasyEdit "
               "defines them (teacher-forced token accuracy; locality = argmax agreement with the unedited model)",
               [("Edits", head, table_rows(results)),
                ("Re-edited subjects", ["subject", "later", "earlier", "prompts", "later_wins"],
                 [list(r.values()) for r in main["later"]])], plot_edits(run, results),
               settings=settings_of(run, ONLINE_SETTINGS), terms=["reliability", "generalisation", "locality"])


def plot_edits(run: Path, results: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
    for ax, metric in zip(axes, ("reliability", "generalisation", "locality"), strict=True):
        for name, res in results.items():
            ax.plot([c["T"] for c in res["curve"]], [c[metric] for c in res["curve"]], marker=".", label=name)
        ax.set_title(metric)
        ax.set_xlabel("edits applied (T)")
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    return [save_plot(fig, run / "curve.png", "Metrics over T (every edit so far, after the T-th)")]


def print_edits(console, results: dict, run: Path) -> None:
    from rich.table import Table

    if console is None:
        return
    table = Table("method", "T", "reliability", "generalisation", "locality", "answers", "later wins",
                  "median s / edit", "undone", title="Edits (EasyEdit's metrics: teacher-forced tokens; answers: "
                  "greedy chat answer holds the new target)")
    for r in table_rows(results):
        table.add_row(r[0], str(r[1]), *[fmt(x, 3) for x in r[2:]])
    console.print(table)
    later = results["forgetlab"]["later"]
    if later:
        console.print("re-edited subjects: " + "; ".join(f"{r['subject']} → {r['later']} ({fmt(r['later_wins'], 2)})"
                                                          for r in later))
    console.print(f"run directory: {run}")

