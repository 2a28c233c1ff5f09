"""What an unlearning run shows: the per-epoch table, the RTT table, their plots and report.html."""

from __future__ import annotations

from pathlib import Path

from ..report import fmt, print_tables, save_plot, settings_of, write_page
from .unlearn_scores import COLUMNS as FIELD_COLUMNS

CHECK_COLUMNS = [("step", "step"), ("epoch", "epoch"), ("forget_ll", "forget acc"), ("forget_qa", "forget QA"),
                 ("retain_ll", "retain acc"), ("retain_qa", "retain QA"), ("general", "general"),
                 ("retain_weight", "retain weight"), ("train_loss", "train loss"), ("note", "")]
LETTER_COLUMNS = [("step", "step"), ("forget_letter", "forget letter"), ("forget_letter_cal", "forget letter cal"),
                  ("retain_letter", "retain letter"), ("retain_letter_cal", "retain letter cal"),
                  ("forget_loss", "forget loss"), ("retain_loss", "retain loss"),
                  ("retain_kshot", "retain acc k-shot")]


def rtt_table(rtt: dict) -> tuple[str, list[str], list[list]]:
    if rtt.get("skipped"):
        return ("RTT: not run", ["why"], [[rtt["skipped"]]])
    return ("RTT: held-out forget facts (V) after retraining on the others (T); best over lr × epoch",
            ["original", "unlearned", "unlearned + RTT", "original + RTT", "recovery rate", "recovered share",
             "recovery epoch (0.8 × original)", "recovery epoch (V acc 0.8)", "best lr"],
            [[rtt["original"], rtt["unlearned"], rtt["unlearned_rtt"], rtt["original_rtt"], rtt["recovery_rate"],
              rtt["recovered_share"], rtt["recovery_epoch"], rtt.get("recovery_epoch_abs"), rtt["best_lr"]]])


def guard_line(state: dict) -> str:
    """The guards' settings and verdict in one line (empty with the guards off)."""
    g, kept = state.get("guard"), state.get("kept") or {}
    if not g:
        return kept.get("reason", "")
    floors = ", ".join(f"{name} ≥ {fmt(v)}" for name, v in (("retain", g["retain_min"]), ("general", g["general_min"]))
                       if v is not None)
    stopped = (kept.get("stopped") or {})
    chat = f" with forget QA ≤ {fmt(g['qa_target'])}" if g.get("qa_target") is not None else ""
    patience = g.get("patience", 1)
    floors += f" (a stop after {patience} checks in a row below one)" if patience > 1 else ""
    back = "".join(f"Went back from step {r['at']} to step {r['to']} (lower learning rate). " for r in g.get("retreats", []))
    return (f"guards: forgotten at forget ≤ {fmt(g['target'])} or a drop of {fmt(g['min_drop'])}{chat}; floors {floors}; "
            f"evaluated every {g['eval_every']} steps. {back}"
            + (f"Stopped at step {stopped['step']}: {stopped['reason']}. " if stopped else "Ran every epoch. ")
            + (f"Kept step {kept.get('step')}: {kept.get('reason')}." if kept.get("acceptable")
               else f"No acceptable checkpoint: {kept.get('reason')}."))


def tables(state: dict) -> list[tuple[str, list[str], list[list]]]:
    checks = state.get("checks") or []
    full = [r for r in checks if r.get("forget_loss") is not None or r.get("retain_loss") is not None]
    letters = [(k, h) for k, h in LETTER_COLUMNS if k == "step" or any(r.get(k) is not None for r in full)]
    out = [(f"Unlearning {state['method']} (LoRA rank {state['lora_rank']}, lr {fmt(state['lr'])}): accuracy by "
            "step (acc: per-option log-likelihood; QA: greedy answers containing the reference, measured at the "
            "start, the kept step and the checks whose forget acc says forgotten; general: built-in general questions)",
            [h for _, h in CHECK_COLUMNS], [[r.get(k) for k, _ in CHECK_COLUMNS] for r in checks]),
           ("Letter choice and losses at the start and the kept step (letter: letter logits; cal: calibrated; "
            "k-shot: option log-likelihood after eval.retain_shots solved retain facts)",
            [h for _, h in letters], [[r.get(k) for k, _ in letters] for r in full])]
    field = [(k, h) for k, h in FIELD_COLUMNS if any(r.get(k) is not None for r in full)]
    if field:
        out.append(("The field's measures at the start and the kept step (TOFU: answer prob, ROUGE-L recall of the "
                    "greedy answer, truth ratio — forget: closer to 1 is better, retain: higher —, model utility, "
                    "forget quality = KS p-value against the reference model; min-k% AUC of forget vs holdout facts "
                    "and MUSE's privleak against the reference; definitions in metrics/tofu.py and metrics/mia.py)",
                    ["step"] + [h for _, h in field], [[r["step"]] + [r.get(k) for k, _ in field] for r in full]))
    if state.get("rtt"):
        out.append(rtt_table(state["rtt"]))
    if state.get("relearn"):
        out.append(relearn_table(state["relearn"]))
    if state.get("quant"):
        out.append(quant_table(state["quant"]))
    return out


def scores_table(scores: dict, reference: str | None) -> tuple[str, list[str], list[list]]:
    """The attacked model's own scores (`attack`, `rtt`): accuracy, QA, the general questions and the field's
    measures, one row."""
    keys = [(k, h) for k, h in [*CHECK_COLUMNS[2:7], *FIELD_COLUMNS] if scores.get(k) is not None]
    return (f"The model attacked, as it is (acc: per-option log-likelihood; the field's measures as in `unlearn`; "
            f"forget quality and privleak against {reference or 'no reference model (--set guard.reference=MODEL)'})",
            [h for _, h in keys], [[scores[k] for k, _ in keys]])


def relearn_table(r: dict) -> tuple[str, list[str], list[list]]:
    if r.get("skipped"):
        return ("Benign relearning attack: not run", ["why"], [[r["skipped"]]])
    return (f"Benign relearning attack: fine-tuned on {r['texts']} texts from {r['source']} that state no forget "
            f"answer ({r['left_out']} left out); forget accuracy, best over lr × epoch; comes back: share of what "
            "unlearning removed",
            ["original", "original relearned", "unlearned", "unlearned relearned", "comes back", "best lr",
             "best epoch"],
            [[r["original"], r["original_relearned"], r["unlearned"], r["unlearned_relearned"], r["comes_back"],
              r["best_lr"], r["best_epoch"]]])


def quant_table(q: dict) -> tuple[str, list[str], list[list]]:
    if q.get("skipped"):
        return ("Quantization attack: not run", ["why"], [[q["skipped"]]])
    return (f"Quantization attack: the weights rounded to {', '.join(map(str, q['bits']))} bits (round-to-nearest, "
            f"groups of {q['group_size']}); comes back: share of the forget accuracy unlearning removed that the "
            "rounding restores",
            ["model", "bits", "forget acc", "forget QA", "retain acc", "comes back"],
            [[r["model"], r["bits"], r["forget_acc"], r["forget_qa"], r["retain_acc"], r.get("comes_back")]
             for r in q["rows"]])


def print_unlearn(console, state: dict) -> None:
    print_tables(console, tables(state), first_left=False)
    line = guard_line(state)
    if line:
        (console.print if console else print)(line)


def rtt_tables(state: dict) -> list[tuple[str, list[str], list[list]]]:
    """`forgetlab rtt`'s tables: the model's own scores (where measured) and RTT."""
    return ([scores_table(state["scores"], state.get("reference_model"))] if state.get("scores") else []) + \
        [rtt_table(state["rtt"])]


def print_unlearn_rtt(console, state: dict) -> None:
    print_tables(console, rtt_tables(state), first_left=False)


def plots(run_dir: Path, state: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    rows = state.get("checks") or []
    fig, ax = plt.subplots(figsize=(7, 3.8))
    steps = [r["step"] for r in rows]
    for key, label, style in (("forget_ll", "forget", "-o"), ("retain_ll", "retain", "-s"), ("general", "general", "-^")):
        values = [r.get(key) for r in rows]
        if any(v is not None for v in values):
            ax.plot(steps, [float("nan") if v is None else v for v in values], style, label=label)
    g, kept = state.get("guard"), state.get("kept") or {}
    if g:
        ax.axhline(g["target"], color="grey", lw=0.8, ls=":", label="forget target")
    if kept.get("step") is not None:
        ax.axvline(kept["step"], color="green" if kept.get("acceptable") is not False else "red", lw=0.8, ls="--",
                   label="kept step")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{state.get('method')}, LoRA rank {state.get('lora_rank')}: forget vs retain")
    if rows:  # (an attack or rtt run has no steps: no step plot)
        ax.legend(fontsize=8)
        made.append(save_plot(fig, run_dir / "unlearn.png", "Forget and retain accuracy by step"))
    else:
        plt.close(fig)
    for key, file, xlabel, ylabel, title, caption in (
            ("rtt", "rtt.png", "RTT epoch", "V accuracy", "Retraining on T: accuracy on the held-out forget facts V",
             "RTT recovery curves"),
            ("relearn", "relearn.png", "relearning epoch", "forget accuracy",
             "Benign relearning: accuracy on the forget facts", "Benign relearning curves")):
        attack = state.get(key)
        if not (attack and attack.get("curves")):
            continue
        fig, ax = plt.subplots(figsize=(7, 3.8))
        for cond, style in (("unlearned", "-"), ("original", "--")):
            for lr, curve in attack["curves"][cond].items():
                ax.plot(range(len(curve)), curve, style, marker=".", label=f"{cond}, lr {float(lr):g}")
        if key == "rtt":
            ax.axhline(0.8 * attack["original"], color="grey", lw=0.8, ls=":", label="0.8 × original")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        ax.legend(fontsize=7)
        made.append(save_plot(fig, run_dir / file, caption))
    quant = state.get("quant")
    if quant and quant.get("rows"):
        fig, ax = plt.subplots(figsize=(7, 3.8))
        labels = list(dict.fromkeys(str(r["bits"]) for r in quant["rows"]))
        for i, (name, colour) in enumerate((("original", "tab:grey"), ("unlearned", "tab:red"))):
            values = {str(r["bits"]): r["forget_acc"] for r in quant["rows"] if r["model"] == name}
            ax.bar([j + 0.38 * i for j in range(len(labels))], [values[b] for b in labels], 0.36, color=colour,
                   label=name)
        ax.set_xticks([j + 0.19 for j in range(len(labels))], [b if b == "full" else f"{b}-bit" for b in labels])
        ax.set_ylabel("forget accuracy")
        ax.set_ylim(0, 1.02)
        ax.set_title("Quantization attack: forget accuracy by precision")
        ax.legend(fontsize=8)
        made.append(save_plot(fig, run_dir / "quant.png", "Quantization attack"))
    return made


def write_unlearn_report(run_dir: Path, state: dict) -> Path:
    sets = state.get("sets", {})
    intro = (f"{guard_line(state)} status: {state['status']} · forget: {sets.get('forget', {}).get('name')} · retain: "
             f"{sets.get('retain', {}).get('name')} · trainable parameters: {state.get('trainable_params')} · "
             f"saved: {state.get('saved', '-')}")
    settings = settings_of(run_dir, ["method.name", "lora.rank", "train.lr", "train.epochs", "train.seed",
                                     "forget", "retain", "learn_first", "guard.eval_every", "guard.patience",
                                     "guard.backtracks", "model.name"])
    return write_page(run_dir, f"forgetlab unlearn: {run_dir.name}", intro, tables(state), plots(run_dir, state),
                      settings=settings, terms=UNLEARN_TERMS)


UNLEARN_TERMS = ["forget acc", "forget QA", "truth ratio", "forget quality", "model utility", "privleak",
                 "recovery rate", "recovered share", "comes back"]
"""The definitions an unlearn, rtt or attack page carries (report.TERMS)."""


def write_rtt_report(run_dir: Path, state: dict) -> Path:
    intro = f"model: {state['model']} · forget facts: {state['forget']} · original: {state['original_model']}"
    return write_page(run_dir, f"forgetlab rtt: {run_dir.name}", intro, rtt_tables(state),
                      plots(run_dir, state), settings=state.get("settings"), terms=UNLEARN_TERMS)


def finish(run_dir: Path, cfg, state: dict, status: str) -> None:
    """An unlearn run's metrics.json, unlearn.csv and index row, rewritten atomically."""
    from ..runs import index_run, write_csv, write_json

    state["status"] = status
    rows = state.get("checks", [])
    if rows:
        header = list(rows[0])
        write_csv(run_dir / "unlearn.csv", header, [[r.get(h) for h in header] for r in rows])
    write_json(run_dir / "metrics.json", {k: v for k, v in state.items() if k != "history"} | {
        "history": state.get("history", [])})
    last, first = (state.get("final") or rows[-1], rows[0]) if rows else ({}, {})
    index_run(cfg.run.root, run_dir, "unlearn", run_dir.name, status,
              {"forget": last.get("forget_ll"), "retain": last.get("retain_ll"),
               "forget_before": first.get("forget_ll"), "retain_before": first.get("retain_ll")})
