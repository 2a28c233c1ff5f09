"""`forgetlab unlearn`: make the model forget a set of facts with LoRA or full weights, measure every epoch, save.

Reads top to bottom: read the facts → load the model (optionally teach it a task first) → attach LoRA or free the
full weights → cache the frozen reference → evaluate, then train epoch by epoch through the one loop, evaluating
after each → merge and save → optionally RTT (retrain on part of the forgotten facts, see recipes/rtt.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import __version__
from ..batching import fixed_batches
from ..config import TrainConfig, UnlearnConfig, dump_yaml
from ..data import load_task
from ..data.unlearn import Fact, FactSet, read_facts
from ..errors import Interrupted, UserError
from ..evaluate import general_score, mcq_letter_probs, mcq_option_logprobs, mean_loss, qa_scores_of_sets
from ..loop import steps_for, train
from ..metrics.unlearning import calibrated_choice, share_correct
from ..model import attach_lora, load_base
from ..report import StepProgress
from ..runs import atomic_dir, index_run, new_run_dir, peak_memory_mb, write_json, write_text
from ..unlearning import UnlearnContext, build_unlearning, canonical


def fact_sets(cfg: UnlearnConfig) -> dict[str, FactSet]:
    """forget, forget_eval, retain, retain_eval (the built-in known facts where nothing is given)."""
    forget = read_facts(cfg.forget or "builtin:animals")
    retain = read_facts(cfg.retain or "builtin:food")
    sets = {"forget": forget, "forget_eval": read_facts(cfg.forget_eval) if cfg.forget_eval else forget,
            "retain": retain, "retain_eval": read_facts(cfg.retain_eval) if cfg.retain_eval else retain}
    if not sets["forget_eval"].mcq() and not sets["forget_eval"].qa():
        raise UserError(f"{sets['forget_eval'].name}: nothing to measure forgetting on (no questions); "
                        "give --forget-eval FILE with MCQ or question/answer records")
    return sets


def run_unlearn(cfg: UnlearnConfig, console=None) -> Path:
    """Unlearn as `cfg` says; return the run directory."""
    name = canonical(cfg.method.name)
    method = build_unlearning(cfg)
    sets = None if cfg.learn_first else fact_sets(cfg)
    if sets and cfg.rtt.enabled and len(sets["forget_eval"].mcq()) < cfg.rtt.splits:
        raise UserError(f"{sets['forget_eval'].name}: --rtt needs at least {cfg.rtt.splits} MCQ facts (one per split), "
                        f"found {len(sets['forget_eval'].mcq())}; give MCQ records with --forget-eval or fewer rtt.splits")
    if cfg.learn_first:
        load_task(cfg.learn_first, _data_cfg())  # a bad task name fails before the model loads
    model, tok = load_base(cfg.model)
    if sets and hasattr(method, "rows"):  # e.g. wrong answers missing: fail before a run directory exists
        method.rows(sets["forget"], UnlearnContext(tok, cfg.train))
    run_dir = new_run_dir(cfg.run.root, cfg.run.name or f"unlearn-{name}-r{cfg.lora.rank}"
                          + (f"-{cfg.learn_first.replace(':', '-')}" if cfg.learn_first else ""))
    write_text(run_dir / "config.yaml", dump_yaml(cfg))
    progress = StepProgress(console)
    state = {"version": __version__, "kind": "unlearn", "method": name, "lora_rank": cfg.lora.rank, "lr": cfg.train.lr,
             "rc": cfg.method.rc, "status": "incomplete", "epochs": []}
    t0 = time.perf_counter()
    try:
        if cfg.learn_first:
            sets = learn_first(model, tok, cfg, progress, run_dir)
        state["sets"] = {k: {"name": v.name, "facts": len(v.facts)} for k, v in sets.items()}
        model = unlearn(model, tok, cfg, method, sets, state, run_dir, progress, console)
        state["train_seconds"] = time.perf_counter() - t0
        state["peak_memory_mb"] = peak_memory_mb(model)
        model = save_model(model, tok, cfg, run_dir, state)
        if cfg.rtt.enabled:
            from .rtt import run_rtt

            state["rtt"] = run_rtt(model, tok, sets["forget_eval"], cfg.rtt, run_dir, original=original_source(cfg, run_dir),
                                   model_cfg=cfg.model, console=console)
    except KeyboardInterrupt:
        finish(run_dir, cfg, state, "interrupted")
        raise Interrupted(run_dir, "unlearn", f"forgetlab unlearn --config {run_dir / 'config.yaml'}") from None
    state["wall_seconds"] = time.perf_counter() - t0
    finish(run_dir, cfg, state, "complete")
    from .unlearn_report import print_unlearn, write_unlearn_report

    write_unlearn_report(run_dir, state)
    print_unlearn(console, state)
    return run_dir


def _data_cfg():
    from ..config import DataConfig

    return DataConfig()


def original_source(cfg: UnlearnConfig, run_dir: Path) -> str:
    """The model before unlearning, for RTT's condition C."""
    if cfg.rtt.original:
        return cfg.rtt.original
    return str(run_dir / "original") if cfg.learn_first else cfg.model.name


def learn_first(model, tok, cfg: UnlearnConfig, progress, run_dir: Path) -> dict[str, FactSet]:
    """Teach the model `cfg.learn_first` (LoRA r16 on all projections, merged into the weights in float32), save it
    as run_dir/original, and split its facts by entity into forget and retain sets."""
    from ..config import KLConfig, LoraSettings, StrategyConfig
    from ..methods import MethodContext, build_method

    task = load_task(cfg.learn_first, _data_cfg())
    facts: dict[str, Fact] = {}
    for item in task.mcq["seen"]:  # the first MCQ of each fact gives its question and choices
        fid = item.meta["fact_id"]
        if fid not in facts:
            facts[fid] = Fact(fid, item.question, item.options[item.answer], item.options, item.answer,
                              wrong=tuple(o for j, o in enumerate(item.options) if j != item.answer))
    entities = list(dict.fromkeys(f.split("/")[0] for f in facts))
    cut = max(1, min(len(entities) - 1, round(len(entities) * cfg.learn.forget_share)))
    forget = FactSet(f"{cfg.learn_first} (first {cut} entities)", [f for k, f in facts.items()
                                                                      if k.split("/")[0] in entities[:cut]])
    retain = FactSet(f"{cfg.learn_first} (other {len(entities) - cut})", [f for k, f in facts.items()
                                                                          if k.split("/")[0] not in entities[:cut]])
    everything = FactSet(cfg.learn_first, list(facts.values()))
    rows = everything.rows(tok, cfg.train.max_length)
    torch.manual_seed(cfg.train.seed)
    lora = LoraSettings(rank=16, alpha=32, dropout=0.0, targets=cfg.lora.targets)
    peft = attach_lora(model, lora)
    tc = TrainConfig(epochs=cfg.learn.epochs, lr=cfg.learn.lr, batch_size=cfg.train.batch_size, seed=cfg.train.seed,
                     max_length=cfg.train.max_length)
    if cfg.learn.kl:  # anchored to the base model on everyday prompts, so learning the task keeps general answers
        method = build_method("kl", StrategyConfig(kl=KLConfig(lam=cfg.learn.kl, reference="base", on="anchors")))
    else:
        method = build_method("naive")
    ctx = MethodContext(0, [task], tok, tc)
    if hasattr(method, "before_task"):
        method.before_task(peft, task, ctx)
    with progress.task(f"learn {cfg.learn_first}", steps_for(len(rows), tc)) as tick:
        train(peft, rows, tc, method, ctx, tok.pad_token_id, seed=cfg.train.seed, on_step=tick)
    learned = peft.merge_and_unload()
    learned.eval()
    save_pretrained_atomic(learned, tok, run_dir / "original")
    return {"forget": forget, "forget_eval": forget, "retain": retain, "retain_eval": retain}


def unlearn(model, tok, cfg: UnlearnConfig, method, sets, state: dict, run_dir: Path, progress, console):
    """Attach the adapter (or free the weights), evaluate, train with per-epoch evaluation; return the model."""
    torch.manual_seed(cfg.train.seed)
    if cfg.lora.rank:
        model = attach_lora(model, cfg.lora.settings())
    else:
        model.requires_grad_(False)
        chosen = method.trainable(model) if hasattr(method, "trainable") else list(model.parameters())
        for p in chosen:
            p.requires_grad_(True)
    state["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ctx = UnlearnContext(tok, cfg.train, retain=sets["retain"].rows(tok, cfg.train.max_length))
    rows = method.rows(sets["forget"], ctx) if hasattr(method, "rows") else sets["forget"].rows(tok, cfg.train.max_length)
    if hasattr(method, "prepare"):
        method.prepare(model, rows, ctx)
    loss_sets = {k: fixed_batches(sets[k.replace("_eval", "")].rows(tok, cfg.train.max_length), 16, tok.pad_token_id)
                 for k in ("forget", "retain")}

    def record(epoch: int, history: list[dict]):
        was_training = model.training
        model.eval()
        row = {"method": state["method"], "lora_rank": cfg.lora.rank, "lr": cfg.train.lr, "rc": cfg.method.rc,
               "epoch": epoch, **evaluate_unlearning(model, tok, sets, cfg, loss_sets),
               "train_loss": sum(h["loss"] for h in history) / len(history) if history else None}
        state["epochs"].append(row)
        finish(run_dir, cfg, state, "incomplete")
        if was_training:
            model.train()

    record(0, [])
    tc = cfg.train
    seen = []
    with progress.task(f"unlearn {state['method']} (rank {cfg.lora.rank})", steps_for(len(rows), tc)) as tick:
        def on_step(row):
            seen.append(row)
            tick(row)

        def on_epoch(ck):
            record(ck["epoch"], [h for h in seen if h["epoch"] == ck["epoch"]])

        state["history"] = train(model, rows, tc, method, ctx, tok.pad_token_id, seed=cfg.train.seed,
                                 on_step=on_step, on_epoch=on_epoch)
    return model


def evaluate_unlearning(model, tok, sets: dict[str, FactSet], cfg: UnlearnConfig, loss_sets: dict) -> dict:
    """Forget and retain accuracy (option log-likelihood, letters, calibrated letters, QA contains), their text
    losses, and the general retention questions."""
    out = {}
    qa = {k: sets[f"{k}_eval"].qa() for k in ("forget", "retain")}
    answers = qa_scores_of_sets(model, tok, qa, cfg.eval.max_new_tokens, cfg.eval.batch_size * 4)
    for k in ("forget", "retain"):
        items = sets[f"{k}_eval"].mcq()
        if items:
            ll = mcq_option_logprobs(model, tok, items)
            probs = mcq_letter_probs(model, tok, items, cfg.eval.batch_size)
            cal = calibrated_choice(probs)
            answers_ = [it.answer for it in items]
            out[f"{k}_ll"] = share_correct(ll, answers_)
            out[f"{k}_letter"] = share_correct(probs, answers_)
            out[f"{k}_letter_cal"] = sum(c == a for c, a in zip(cal, answers_, strict=True)) / len(items)
        out[f"{k}_qa"] = answers[k]["contains"] if answers[k]["n"] else None
        out[f"{k}_loss"] = mean_loss(model, loss_sets[k])
    out["general"] = general_score(model, tok, cfg.general) if cfg.general.enabled else None
    return out


def save_pretrained_atomic(model, tok, path: Path) -> None:
    """A transformers model directory (weights and tokenizer), written in one step."""
    atomic_dir(path, lambda tmp: (model.save_pretrained(tmp), tok.save_pretrained(tmp)))


def save_model(model, tok, cfg: UnlearnConfig, run_dir: Path, state: dict):
    """`save: merged`: the adapter merged into the weights in float32, a plain transformers directory (run_dir/model);
    `adapter`: the PEFT adapter (run_dir/adapter). Returns the merged model (what RTT retrains)."""
    from ..model import save_adapter

    if cfg.save == "adapter":
        save_adapter(model, run_dir / "adapter", {"version": __version__, "method": state["method"],
                                                  "base": cfg.model.name})
        state["saved"] = str(run_dir / "adapter")
    if cfg.lora.rank:
        dtype = next(model.parameters()).dtype
        model = model.to(torch.float32).merge_and_unload().to(dtype)
    model.requires_grad_(False)
    model.eval()
    if cfg.save == "merged":
        save_pretrained_atomic(model.to(torch.float32), tok, run_dir / "model")
        state["saved"] = str(run_dir / "model")
    return model


def finish(run_dir: Path, cfg: UnlearnConfig, state: dict, status: str) -> None:
    """metrics.json, unlearn.csv and the index row, rewritten atomically."""
    from ..runs import write_csv

    state["status"] = status
    rows = state["epochs"]
    if rows:
        header = list(rows[0])
        write_csv(run_dir / "unlearn.csv", header, [[r.get(h) for h in header] for r in rows])
    write_json(run_dir / "metrics.json", {k: v for k, v in state.items() if k != "history"} | {
        "history": state.get("history", [])})
    last, first = (rows[-1], rows[0]) if rows else ({}, {})
    index_run(cfg.run.root, run_dir, "unlearn", run_dir.name, status,
              {"forget": last.get("forget_ll"), "retain": last.get("retain_ll"),
               "forget_before": first.get("forget_ll"), "retain_before": first.get("retain_ll")})
