"""`forgetlab unlearn`: make the model forget a set of facts with LoRA or full weights, guarded, measured, saved.

Reads top to bottom: read the facts → load the model (optionally teach it a task first) → attach LoRA or free the
full weights → cache the frozen reference → evaluate, then train through the one loop with the guards checking
every few steps (stop at the target or a floor) → restore the kept checkpoint, score it in full → merge and save →
optionally RTT on it (retrain on part of the forgotten facts, see recipes/rtt.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import __version__
from ..config import TrainConfig, UnlearnConfig, dump_yaml
from ..data import load_task
from ..data.unlearn import Fact, FactSet, read_facts
from ..errors import BelowBar, Interrupted, UserError
from ..loop import make_optimizer, steps_for, train
from ..model import adapter_state, attach_lora, freeze_below, load_adapter_state, load_base, save_pretrained_atomic
from ..report import StepProgress, fmt, markdown_table
from ..runs import new_run_dir, peak_memory_mb, write_text
from ..tracking import NullTracker, require, tracker
from ..unlearning import UnlearnContext, build_unlearning, canonical
from ..unlearning.chat import with_chat_keys
from .unlearn_report import finish
from .unlearn_scores import evaluate_unlearning, forget_score, loss_batches, reference_scores


def fact_sets(cfg: UnlearnConfig) -> dict[str, FactSet]:
    """forget, forget_eval, retain, retain_eval (the built-in known facts where nothing is given)."""
    forget = read_facts(cfg.forget or "builtin:animals")
    if cfg.max_samples:
        forget = FactSet(f"{forget.name} (first {cfg.max_samples})", forget.facts[:cfg.max_samples])
    retain = read_facts(cfg.retain or "builtin:food")
    sets = {"forget": forget, "forget_eval": read_facts(cfg.forget_eval) if cfg.forget_eval else forget,
            "retain": retain, "retain_eval": read_facts(cfg.retain_eval) if cfg.retain_eval else retain}
    if cfg.holdout:
        sets["holdout"] = read_facts(cfg.holdout)
    if not sets["forget_eval"].mcq() and not sets["forget_eval"].qa():
        raise UserError(f"{sets['forget_eval'].name}: nothing to measure forgetting on (no questions); "
                        "give --forget-eval FILE with MCQ or question/answer records")
    return sets


def run_unlearn(cfg: UnlearnConfig, console=None) -> Path:
    """Unlearn as `cfg` says; return the run directory."""
    name = canonical(cfg.method.name)
    method = build_unlearning(cfg)
    sets = None if cfg.learn_first else fact_sets(cfg)
    if sets and cfg.relearn.enabled and not sets["forget_eval"].mcq():
        raise UserError(f"{sets['forget_eval'].name}: --attacks relearn measures MCQ forget facts and found none; "
                        "give MCQ records with --forget-eval")
    if sets and cfg.relearn.enabled:
        from .attacks import benign_texts

        benign_texts(sets, cfg)  # a relearn file that is missing, bad or all answers fails before the model loads
    elif cfg.relearn.enabled and cfg.relearn.file:
        read_facts(cfg.relearn.file)  # --learn-first: the answers are known later, the file is read now
    if sets and cfg.rtt.enabled and len(sets["forget_eval"].mcq()) < cfg.rtt.splits:
        raise UserError(f"{sets['forget_eval'].name}: --rtt needs at least {cfg.rtt.splits} MCQ facts (one per split), "
                        f"found {len(sets['forget_eval'].mcq())}; give MCQ records with --forget-eval or fewer rtt.splits")
    if sets and cfg.general.enabled:
        note_shared(sets["forget"])
    if cfg.learn_first:
        load_task(cfg.learn_first, _data_cfg())  # a bad task name fails before the model loads
    require(cfg.run.log)
    model, tok = load_base(cfg.model)
    if sets and hasattr(method, "rows"):  # e.g. wrong answers missing: fail before a run directory exists
        method.rows(sets["forget"], UnlearnContext(tok, cfg.train))
    run_dir = new_run_dir(cfg.run.root, cfg.run.name or f"unlearn-{name}-r{cfg.lora.rank}"
                          + (f"-{cfg.learn_first.replace(':', '-')}" if cfg.learn_first else ""))
    write_text(run_dir / "config.yaml", dump_yaml(cfg))
    progress = StepProgress(console)
    state = {"version": __version__, "kind": "unlearn", "method": name, "lora_rank": cfg.lora.rank, "lr": cfg.train.lr,
             "rc": cfg.method.rc, "status": "incomplete", "checks": []}
    t0 = time.perf_counter()
    track = tracker(cfg.run.log, run_dir, run_dir.name, cfg.model_dump(mode="json"))
    try:
        reference = None
        if cfg.learn_first:
            sets, reference = learn_first(model, tok, cfg, progress, run_dir)
        else:
            reference = reference_of(cfg, tok, sets)
        state["sets"] = {k: {"name": v.name, "facts": len(v.facts)} for k, v in sets.items()}
        state["reference"] = reference  # what forget quality and privleak compare with (None: no such model)
        model = unlearn(model, tok, cfg, method, sets, state, run_dir, progress, console, reference, track)
        state["train_seconds"] = time.perf_counter() - t0
        from .rtt import step_seconds

        state["step_seconds"] = step_seconds(state["history"])
        state["peak_memory_mb"] = peak_memory_mb(model)
        accepted = state["kept"]["acceptable"] is not False
        model = save_model(model, tok, cfg, run_dir, state, prefix="" if accepted else "rejected-")
        if cfg.rtt.enabled and accepted:
            from .rtt import run_rtt

            state["rtt"] = run_rtt(model, tok, sets["forget_eval"], cfg.rtt, run_dir, original=original_source(cfg, run_dir),
                                   model_cfg=cfg.model, console=console)
        elif cfg.rtt.enabled:
            state["rtt"] = {"skipped": "the unlearned model is below the floors or forgot too little: RTT on it "
                                       "would measure a broken model, not hidden knowledge"}
        from .attacks import quant_attack, relearn_attack

        for key, attack in (("relearn", relearn_attack), ("quant", quant_attack)):
            if getattr(cfg, key).enabled:
                state[key] = attack(model, tok, sets, cfg, original_source(cfg, run_dir),
                                    log=console.print if console else print) if accepted else \
                    {"skipped": "the unlearned model is below the floors or forgot too little"}
    except BaseException as e:
        track.close()  # what was logged stays readable
        if not isinstance(e, KeyboardInterrupt):
            raise
        finish(run_dir, cfg, state, "interrupted")
        raise Interrupted(run_dir, "unlearn", f"forgetlab unlearn --config {run_dir / 'config.yaml'}") from None
    state["wall_seconds"] = time.perf_counter() - t0
    finish(run_dir, cfg, state, "complete" if state["kept"]["acceptable"] is not False else "below bar")
    from .unlearn_report import print_unlearn, tables, write_unlearn_report

    write_unlearn_report(run_dir, state)
    print_unlearn(console, state)
    track.text("summary", "\n\n".join(f"**{t}**\n\n{markdown_table(h, rows)}" for t, h, rows in tables(state)))
    track.close()
    if state["kept"]["acceptable"] is False:
        k = state["final"]
        raise BelowBar(f"unlearn: no checkpoint met the bar ({state['kept']['reason']}); the nearest (step "
                       f"{k['step']}: forget {fmt(k.get('forget_ll', k.get('forget_qa')))}, retain "
                       f"{fmt(k.get('retain_ll', k.get('retain_qa')))}, general {fmt(k.get('general'))}) "
                       + (f"is saved as {state['saved']}" if state.get("saved") else "was not saved (--save none)")
                       + "; try another --lr, more --epochs or another --method")
    return run_dir


def note_shared(forget: FactSet) -> None:
    """One line on stderr when forget facts are also general questions (their loss is not damage)."""
    import sys

    from ..data.general import RETENTION, shared_questions

    shared = shared_questions([(f.question, f.answer) for f in forget.facts])
    if shared:
        print(f"forgetlab: note: {len(shared)} of the {len(RETENTION)} general questions ask what {forget.name} holds "
              f"({'; '.join(shared[:3])}{'; …' if len(shared) > 3 else ''}): the general score falls as they are "
              "forgotten, so its floor binds sooner", file=sys.stderr)


def _data_cfg():
    from ..config import DataConfig

    return DataConfig()


def original_source(cfg: UnlearnConfig, run_dir: Path) -> str:
    """The model before unlearning, for RTT's condition C."""
    if cfg.rtt.original:
        return cfg.rtt.original
    return str(run_dir / "original") if cfg.learn_first else cfg.model.name


def task_facts(task) -> dict[str, Fact]:
    """A facts task's facts by id: the first MCQ of each fact gives its question and choices."""
    facts: dict[str, Fact] = {}
    for item in task.mcq["seen"]:
        fid = item.meta["fact_id"]
        if fid not in facts:
            facts[fid] = Fact(fid, item.question, item.options[item.answer], item.options, item.answer,
                              wrong=tuple(o for j, o in enumerate(item.options) if j != item.answer))
    return facts


def learn_first(model, tok, cfg: UnlearnConfig, progress, run_dir: Path) -> tuple[dict[str, FactSet], dict]:
    """Teach the model `cfg.learn_first` (LoRA r16 on all projections, merged into the weights in float32), save it
    as run_dir/original, and split its facts by entity into forget and retain sets; the holdout (unless --holdout)
    is as many facts about people of another invented world, never taught. Also returns the model before it
    learned them as the reference (`reference_of`): the guards' target (forgotten = back where it started), forget
    quality and privleak."""
    from ..config import DataConfig, FactsConfig, KLConfig, LoraSettings, StrategyConfig
    from ..methods import MethodContext, build_method

    task = load_task(cfg.learn_first, _data_cfg())
    facts = task_facts(task)
    entities = list(dict.fromkeys(f.split("/")[0] for f in facts))
    cut = max(1, min(len(entities) - 1, round(len(entities) * cfg.learn.forget_share)))
    forget = FactSet(f"{cfg.learn_first} (first {cut} entities)", [f for k, f in facts.items()
                                                                      if k.split("/")[0] in entities[:cut]])
    retain = FactSet(f"{cfg.learn_first} (other {len(entities) - cut})", [f for k, f in facts.items()
                                                                          if k.split("/")[0] not in entities[:cut]])
    everything = FactSet(cfg.learn_first, list(facts.values()))
    sets = {"forget": forget, "forget_eval": forget, "retain": retain, "retain_eval": retain}
    if cfg.holdout:
        sets["holdout"] = read_facts(cfg.holdout)
    else:
        other = task_facts(load_task(cfg.learn_first, DataConfig(facts=FactsConfig(seed=_data_cfg().facts.seed + 1))))
        untaught = [f for k, f in other.items() if k.split("/")[0] not in entities][:len(forget.facts)]
        sets["holdout"] = FactSet(f"{cfg.learn_first} (people never taught)", untaught)
    before = reference_of(cfg, tok, sets, None if cfg.guard.reference else model)
    rows = everything.rows(tok, cfg.train.max_length)
    torch.manual_seed(cfg.train.seed)
    lora = LoraSettings(rank=16, alpha=32, dropout=0.0, targets=cfg.lora.targets)
    peft = attach_lora(model, lora)
    tc = TrainConfig(epochs=cfg.learn.epochs, lr=cfg.learn.lr, batch_size=cfg.learn.batch_size, seed=cfg.train.seed,
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
    return sets, before


def unlearn(model, tok, cfg: UnlearnConfig, method, sets, state: dict, run_dir: Path, progress, console,
            reference: dict | None = None, track: NullTracker | None = None):
    """Attach the adapter (or free the weights), evaluate, train with the guards (unlearning/guard.py): a cheap
    evaluation every `guard.eval_every` steps, a stop at the target or a floor, the best checkpoint restored at the
    end and measured in full. Returns the model holding the kept weights."""
    torch.manual_seed(cfg.train.seed)
    if cfg.lora.rank:
        model = attach_lora(model, cfg.lora.settings())
    else:
        model.requires_grad_(False)
        chosen = method.trainable(model) if hasattr(method, "trainable") else list(model.parameters())
        for p in chosen:
            p.requires_grad_(True)
    freeze_below(model, cfg.freeze_layers)
    state["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ctx = UnlearnContext(tok, cfg.train, retain=sets["retain"].rows(tok, cfg.train.max_length))
    rows = method.rows(sets["forget"], ctx) if hasattr(method, "rows") else sets["forget"].rows(tok, cfg.train.max_length)
    if hasattr(method, "prepare"):
        method.prepare(model, rows, ctx)
    method = with_chat_keys(method, model, tok, cfg, sets["forget"], state, sets["retain"])  # method.chat_*
    loss_sets = loss_batches(sets, tok, cfg.train.max_length)
    tc, gc = cfg.train, cfg.guard
    total = steps_for(len(rows), tc)
    per_epoch, every = total // tc.epochs, gc.eval_every or max(2, total // tc.epochs // 2)
    seen: list[dict] = []
    base = {"method": state["method"], "lora_rank": cfg.lora.rank, "lr": cfg.train.lr, "rc": cfg.method.rc}

    def measure(step: int, epoch: int, full: bool) -> dict:
        since = [h for h in seen if h["step"] > (state["checks"][-1]["step"] if state["checks"] else 0)]
        row = {**base, "retain_weight": cfg.method.rc * ctx.retain_scale, "step": step, "epoch": epoch,
               **evaluate_unlearning(model, tok, sets, cfg, loss_sets if full else None, reference),
               "train_loss": sum(h["loss"] for h in since) / len(since) if since else None, "note": ""}
        (track or NullTracker()).scalars(row, step, "check/")
        return row

    start = measure(0, 0, full=True)
    state["checks"] = [start]
    accuracy = reference["accuracy"] if reference else None
    guard = make_guard(cfg, sets, start, accuracy) if gc.enabled else None
    if guard:
        guard.see(guard_check(start))
        state["guard"] = {"target": guard.target, "retain_min": guard.retain_min, "general_min": guard.general_min,
                          "min_drop": gc.min_drop, "qa_target": guard.qa_target, "eval_every": every,
                          "patience": gc.patience, "retain_gain": gc.retain_gain, "backtracks": gc.backtracks,
                          "reference": accuracy}
    finish(run_dir, cfg, state, "incomplete")
    snapshots: dict[int, dict] = {0: adapter_state(model)} if guard and gc.backtracks else {}
    stopped: dict = {}
    opt, lr = make_optimizer([p for p in model.parameters() if p.requires_grad], tc), [1.0]

    def check(row: dict) -> bool:
        seen.append(row)
        end_of_epoch = row["step"] % per_epoch == 0  # the unguarded table's rows; guarded, the last step is checked
        if not (row["step"] % every == 0 or row["step"] == total or (guard is None and end_of_epoch)):
            return False
        result = measure(row["step"], row["epoch"], full=guard is None and end_of_epoch)
        if (guard and guard.qa_target is not None and result.get("forget_ll") is not None
                and guard.options_forgotten(result["forget_ll"]) and sets["forget_eval"].qa()):
            result["forget_qa"] = forget_score(model, tok, sets, True, cfg.eval.max_new_tokens)  # only where it decides
        state["checks"].append(result)
        if guard is None:
            finish(run_dir, cfg, state, "incomplete")
            return False
        c = guard.see(guard_check(result))
        ctx.retain_scale = guard.retain_scale(gc.retain_gain, c.retain)
        # keep the weights of the best checkpoint so far and (with backtracks) of the last one above the floors
        wanted = {k.step for k in (guard.kept()[0] or guard.best_rejected(), gc.backtracks and guard.last_held()) if k}
        if c.step in wanted:
            snapshots[c.step] = adapter_state(model)
        for s in set(snapshots) - wanted:
            del snapshots[s]
        reason = guard.stop_reason(c)
        back = guard.retreat(c)
        if back:  # nothing acceptable yet: go back and carry on more gently
            load_adapter_state(model, snapshots[back.step])
            opt.state.clear()
            lr[0] *= gc.backtrack_lr
            result["note"], reason = f"back to step {back.step} ({reason}), lr × {lr[0]:g}", None
            state["guard"]["retreats"] = [{"at": at, "to": to} for at, to in guard.retreats]
        finish(run_dir, cfg, state, "incomplete")
        if reason:
            stopped.update(step=c.step, reason=reason)
            result["note"] = f"stop: {reason}"
            return True
        return False

    with progress.task(f"unlearn {state['method']} (rank {cfg.lora.rank})", total) as tick:
        def on_step(row):
            tick(row)
            (track or NullTracker()).step(row, row["step"])
            return check(row)

        state["history"] = train(model, rows, tc, method, ctx, tok.pad_token_id, seed=cfg.train.seed,
                                 stop=on_step, optimizer=opt, lr_scale=lambda: lr[0])
    if guard is None:
        state["kept"] = {"step": state["checks"][-1]["step"], "acceptable": None,
                         "reason": "guards off: the last step"}
        last = state["checks"][-1]
        if last.get("forget_loss") is None:  # the last check was a cheap one: measure it in full
            state["checks"][-1] = measure(last["step"], last["epoch"], full=True) | {"train_loss": last["train_loss"]}
        state["final"] = state["checks"][-1]
        return model
    kept, why = guard.kept()
    chosen = kept or guard.best_rejected()  # a check after the start always exists: the last step is one
    state["kept"] = {"step": chosen.step, "epoch": chosen.epoch, "acceptable": kept is not None, "reason": why,
                     "stopped": stopped or None}
    if chosen.step != state["history"][-1]["step"]:
        load_adapter_state(model, snapshots[chosen.step])
    final = measure(chosen.step, chosen.epoch, full=True)  # the restored weights, scored in full
    i = next(i for i, r in enumerate(state["checks"]) if r["step"] == chosen.step and i > 0)
    final |= {k: state["checks"][i][k] for k in ("train_loss", "retain_weight")}  # what trained up to that check
    final["note"] = "; ".join(filter(None, [state["checks"][i]["note"],
                                            ("kept: " if kept else "best, not acceptable: ") + why]))
    state["checks"][i] = final
    state["final"] = final
    return model


def guard_check(row: dict):
    from ..unlearning.guard import Check

    forget = row["forget_ll"] if row.get("forget_ll") is not None else row["forget_qa"]
    retain = row["retain_ll"] if row.get("retain_ll") is not None else row.get("retain_qa")
    qa = row.get("forget_qa") if row.get("forget_ll") is not None else None  # QA as a second condition
    return Check(row["step"], row["epoch"], forget, retain, row.get("general"), qa)


def make_guard(cfg: UnlearnConfig, sets: dict[str, FactSet], start: dict, reference: float | None):
    """The guard of this run: floors from the start scores, the target from the config, a reference model's forget
    accuracy, or chance (MCQ facts; 0 where forgetting is scored by open answers)."""
    from ..unlearning.guard import Guard, chance

    gc = cfg.guard
    first = guard_check(start)
    if gc.target is not None:
        target = gc.target
    elif reference is not None:
        target = reference + gc.margin
    else:
        items = sets["forget_eval"].mcq()
        target = (chance([len(it.options) for it in items]) if items else 0.0) + gc.margin
    return Guard(first.forget, first.retain, first.general, target, gc.min_drop, gc.retain_floor, gc.general_floor,
                 gc.qa_target if sets["forget_eval"].mcq() else None,  # without options, QA is the forget score
                 patience=gc.patience, backtracks=gc.backtracks)


def reference_of(cfg: UnlearnConfig, tok, sets: dict[str, FactSet], model=None) -> dict | None:
    """What a model that never saw the forget facts scores (guard.reference, loaded here, or `model`): its forget
    accuracy ("accuracy": option log-likelihood, QA where the facts have no choices; the guards' target) and
    `reference_scores` (its truth ratios and min-k% AUCs, for forget quality and privleak). None without one."""
    if model is None and not cfg.guard.reference:
        return None
    ref = model if model is not None else load_base(cfg.model.model_copy(update={"name": cfg.guard.reference}))[0]
    out = {"accuracy": forget_score(ref, tok, sets),
           **reference_scores(ref, tok, sets, sets.get("holdout"), cfg.train.max_length)}
    del ref
    return out


def save_model(model, tok, cfg: UnlearnConfig, run_dir: Path, state: dict, prefix: str = ""):
    """`save: merged`: the adapter merged into the weights in float32, a plain transformers directory (run_dir/model);
    `adapter`: the PEFT adapter (run_dir/adapter); a model below the bar goes to rejected-model / rejected-adapter.
    Returns the merged model (what RTT retrains)."""
    from ..model import save_adapter

    if cfg.save == "adapter":
        save_adapter(model, run_dir / f"{prefix}adapter", {"version": __version__, "method": state["method"],
                                                  "base": cfg.model.name})
        state["saved"] = str(run_dir / f"{prefix}adapter")
    if cfg.lora.rank:
        dtype = next(model.parameters()).dtype
        model = model.to(torch.float32).merge_and_unload().to(dtype)
    model.requires_grad_(False)
    model.eval()
    if cfg.save == "merged":
        save_pretrained_atomic(model.to(torch.float32), tok, run_dir / f"{prefix}model")
        state["saved"] = str(run_dir / f"{prefix}model")
    return model
