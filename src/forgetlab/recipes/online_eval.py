"""`forgetlab online-eval`: the automated fact-learning test of the online learner.

Reads top to bottom: load the model once → start a learner on it (fresh state in the run directory) → cache the
starting model's answers to the locality prompts → stream every statement `repeats` times, a chit-chat turn after
every second one, through the same learner the chat uses (recall of the facts stated so far and the KL to the start
measured every `metrics_every` turns) → score everything at the end of the stream → tables, CSVs, report.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from ..config import OnlineConfig, dump_yaml
from ..data.records import Example, user
from ..metrics.qa import contains, exact_match
from ..model import load_base
from ..online.learner import OnlineLearner
from ..online.probes import CHITCHAT, FactProbes
from ..report import ONLINE_SETTINGS, count_progress, fmt, save_plot, settings_of, write_page
from ..runs import index_run, new_run_dir, write_csv, write_json, write_text
from ..sessions.holder import Loaded, ModelHolder


def online_eval(cfg: OnlineConfig, facts: list[FactProbes], repeats: int, locality: list[str] | None,
                root: str | Path, name: str = "online-eval", console=None) -> dict:
    """Run the test; return its summary (also in `<run>/metrics.json`)."""
    # One model, one learner, fresh state inside the run directory.
    run = new_run_dir(root, name)
    holder = ModelHolder(lambda: Loaded(*load_base(cfg.model), "base", None, time.time()))
    learner = OnlineLearner(holder, cfg, run / "state")
    prompts = locality or [ex.messages[-1]["content"] for ex in learner.locality]
    start_answers = answers_to(learner, prompts, cfg.gate.check_tokens)

    # The stream: statements (and chit-chat) through the learner, the curve measured as it goes.
    turns = [(f.statement, i) for _ in range(repeats) for i, f in enumerate(facts)]
    stream = []
    for n, (text, i) in enumerate(turns):
        stream.append((text, i))
        if n % 2 == 1:
            stream.append((CHITCHAT[(n // 2) % len(CHITCHAT)], None))
    learned_at, said, seconds, curve = {}, [0] * len(facts), [], []
    for text, i in progress(console, stream):
        turn = learner.state.next_turn()
        reply = holder.complete([{"role": "user", "content": text}], max_tokens=cfg.max_new_tokens).text \
            if cfg.update.regular and i is None else ""
        result = learner.learn(turn, text, reply)
        seconds += [u.seconds for u in result.updates if u.kind == "fact"]
        if i is not None:
            said[i] += 1
            if i not in learned_at and any(u.learned for u in result.updates):
                learned_at[i] = said[i]
        if result.metrics is not None:
            stated = [f for f, n_said in zip(facts, said, strict=True) if n_said]
            curve.append({"turn": turn, "recall": probe_recall(learner, stated), "kl": result.metrics["kl_to_start"],
                          "control": result.metrics["control"]})
    learner.wait()

    # Score at the end of the stream.
    rows = score_facts(learner, facts, learned_at)
    end_answers = answers_to(learner, prompts, cfg.gate.check_tokens)
    agree = [bool(exact_match(b, a)) for a, b in zip(start_answers, end_answers, strict=True)]
    tokens = token_agreement(learner, prompts, start_answers)
    final = holder.update(lambda _: learner.measure(learner.state.turn))
    summary = {"facts": len(facts), "repeats": repeats, "turns": learner.state.turn,
               "reliability": mean([r["reliability"] for r in rows]),
               "generalisation": mean([r["generalisation"] for r in rows]),
               "inverse": mean([r["inverse"] for r in rows if r["inverse"] is not None]),
               "locality": mean(tokens), "locality_exact": mean(agree),
               "median_update_s": statistics.median(seconds) if seconds else None,
               "turns_to_learn": mean([r["turns_to_learn"] for r in rows if r["turns_to_learn"] is not None]),
               "never_learned": sum(r["turns_to_learn"] is None for r in rows), **final}

    # What a person reads: the printed table, CSVs, metrics.json, report.html with the curves.
    write_csv(run / "facts.csv", list(rows[0]), [list(r.values()) for r in rows])
    write_csv(run / "curve.csv", ["turn", "recall", "kl", "control"], [list(c.values()) for c in curve])
    write_csv(run / "locality.csv", ["prompt", "start", "end", "same_answer", "token_agreement"],
              [[p, a, b, int(g), round(t, 4)]
               for p, a, b, g, t in zip(prompts, start_answers, end_answers, agree, tokens, strict=True)])
    write_text(run / "config.yaml", dump_yaml(cfg))
    write_json(run / "metrics.json", {"summary": summary, "facts": rows, "curve": curve})
    write_page(run, f"forgetlab online-eval: {run.name}", f"{len(facts)} facts × {repeats}, {summary['turns']} turns",
               [("Summary", ["metric", "value"], [[k, v] for k, v in summary.items()]),
                ("Facts", list(rows[0]), [list(r.values()) for r in rows])], plot_curve(run, curve),
               settings=settings_of(run, ONLINE_SETTINGS), terms=["reliability", "generalisation", "locality", "general"])
    index_run(root, run, "online-eval", run.name, "complete", summary)
    print_summary(console, summary, rows, run)
    return summary


def answers_to(learner: OnlineLearner, prompts: list[str], tokens: int) -> list[str]:
    examples = [Example(user(p), "") for p in prompts]
    return learner.holder.update(lambda _: learner.generate(examples, tokens))


def token_agreement(learner: OnlineLearner, prompts: list[str], answers: list[str]) -> list[float]:
    """Per prompt: the share of the starting model's answer tokens that the model now also predicts (its argmax
    given the same prompt and the answer so far) — the token-level locality of the knowledge-editing literature.
    Unlike `same answer`, a reworded ending after the first changed token costs only that token."""
    from ..batching import encode
    from ..forward import per_row
    from ..losses import answer_logits

    def agreement(m, batch, _):
        logits, targets = answer_logits(m, batch)
        hit = (logits.argmax(-1) == targets)[:-1]  # not the end-of-turn token: the answers were cut off
        return [float(hit.float().mean()) if hit.numel() else 1.0]

    rows = [encode(learner.tok, Example(user(p), a or "OK"), 512) for p, a in zip(prompts, answers, strict=True)]
    return learner.holder.update(lambda _: learner.by_route(
        prompts, lambda idx: per_row(learner.model, [rows[i] for i in idx], learner.tok.pad_token_id, agreement, 1)))


def probe_recall(learner: OnlineLearner, facts: list[FactProbes]) -> float:
    """Share of these facts' paraphrased probes answered with a key."""
    probes = [p for f in facts for p in f.probes]
    answers = answers_to(learner, [p.question for p in probes], learner.cfg.max_new_tokens)
    return mean([passes(a, p.keys) for a, p in zip(answers, probes, strict=True)])


def passes(answer: str, keys: tuple[str, ...]) -> float:
    return float(any(contains(answer, k) for k in keys))


def score_facts(learner: OnlineLearner, facts: list[FactProbes], learned_at: dict) -> list[dict]:
    """Per fact: reliability (its trained question forms), generalisation (probes), inverse, turns to learn."""
    stored = {m["statement"].rstrip("."): m for m in learner.memory.all()}
    questions, where = [], []
    for i, f in enumerate(facts):
        row = stored.get(f.statement.rstrip("."))
        forms = [(q, (row["value"],)) for q, _ in row["forms"][:learner.cfg.update.forms]] if row else []
        for kind, items in (("reliability", forms), ("generalisation", [(p.question, p.keys) for p in f.probes]),
                            ("inverse", [(p.question, p.keys) for p in f.inverse])):
            for q, keys in items:
                questions.append(q)
                where.append((i, kind, keys))
    answers = answers_to(learner, questions, learner.cfg.max_new_tokens)
    got: dict = {}
    for (i, kind, keys), a in zip(where, answers, strict=True):
        got.setdefault((i, kind), []).append(passes(a, keys))
    return [{"fact": f.statement, "stored": f.statement.rstrip(".") in stored,
             "reliability": mean(got.get((i, "reliability"), [0.0])),
             "generalisation": mean(got.get((i, "generalisation"), [0.0])),
             "inverse": mean(got[(i, "inverse")]) if (i, "inverse") in got else None,
             "turns_to_learn": learned_at.get(i)} for i, f in enumerate(facts)]


def mean(xs: list) -> float | None:
    xs = [float(x) for x in xs]
    return sum(xs) / len(xs) if xs else None


def progress(console, items: list):
    with count_progress(console, disable=console is None) as bar:
        yield from bar.track(items, description="online-eval turns")


def plot_curve(run: Path, curve: list[dict]) -> list[tuple[str, str]]:
    if not curve:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    turns = [c["turn"] for c in curve]
    ax.plot(turns, [c["recall"] for c in curve], marker="o", label="probe recall (facts stated so far)")
    ax.plot(turns, [c["control"] for c in curve], marker="s", label="control answers kept")
    ax.set_xlabel("turn")
    ax.set_ylim(-0.02, 1.02)
    ax2 = ax.twinx()
    ax2.plot(turns, [c["kl"] for c in curve], color="tab:red", linestyle="--", label="KL to the start")
    ax2.set_ylabel("KL")
    fig.legend(loc="lower right", fontsize=8)
    return [save_plot(fig, run / "curve.png", "Recall and KL over turns")]


def print_summary(console, summary: dict, rows: list[dict], run: Path) -> None:
    from rich.table import Table

    if console is None:
        return
    table = Table("fact", "stored", "reliability", "generalisation", "inverse", "turns to learn",
                  title="Facts at the end of the stream")
    for r in rows:
        table.add_row(r["fact"], "yes" if r["stored"] else "no", fmt(r["reliability"], 2), fmt(r["generalisation"], 2),
                      fmt(r["inverse"], 2), fmt(r["turns_to_learn"]))
    console.print(table)
    keys = ("reliability", "generalisation", "inverse", "locality", "locality_exact", "median_update_s", "turns_to_learn",
            "never_learned", "kl_to_start", "perplexity_drift", "control", "facts_stored", "facts_learned",
            "updates_rejected")
    s = Table("metric", "value", title="Summary")
    for k in keys:
        s.add_row(k, fmt(summary.get(k), 3))
    console.print(s)
    console.print(f"run directory: {run}")
