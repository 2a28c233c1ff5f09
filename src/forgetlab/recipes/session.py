"""`forgetlab session train`: train the next session of an assistant on a new Q&A file, keeping the earlier ones.

Reads top to bottom: validate the data (and rephrase each question) → build the model of the sessions so far →
resolve every setting once → score the check questions before training → add a new adapter → train (earlier
sessions' rows replayed and distilled, the base anchored, a checkpoint after every epoch) → score every session's
check questions → save the session → make it active.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..batching import encode
from ..config import ModelConfig, SessionConfig
from ..data.records import Example
from ..errors import Interrupted, UserError
from ..evaluate import general_score, qa_scores_of_sets
from ..loop import train
from ..model import adapter_state, load_adapter_state, resolve_device
from ..report import StepProgress
from ..retain import Anchors, TopKReference, build_anchors
from ..runs import atomic_file, clean_partial, peak_memory_mb, read_json, write_csv, write_json, write_text
from ..sessions.compose import adapter_key, add_session_adapter, load_chain, save_session_adapter
from ..sessions.data import file_hash, load_examples, rephrased, split_heldout, write_jsonl_text
from ..sessions.loss import SessionLoss
from ..sessions.manage import write_report
from ..sessions.settings import Plan, resolve
from ..sessions.store import Store, epoch_dir

ANCHOR_LENGTH = 256  # the anchor prompts and answers are far shorter


@dataclass
class SessionData:
    """What a session trains on and checks with: the file's rows (records and their rephrasings) and the check
    questions, with a line saying where the check questions come from."""

    rows: list[Example]
    checks: list[Example]
    records: int
    check_source: str


def train_session(store: Store, cfg: SessionConfig, data: str | None, heldout: str | None = None,
                  resume: bool = False, console=None) -> dict:
    """Train session k (the next one) of `store`'s assistant; return its session.json record."""
    # The data and the session's place: every problem found before a model is loaded.
    part = store.partial_dir
    if store.path.is_dir():
        clean_partial(store.path)  # what a kill mid-write left aside
    if part.exists() and not can_resume(store):
        shutil.rmtree(part)  # a session that stopped before its first files were complete: nothing to resume
    if resume and not part.exists() and data:  # killed before anything was saved: start it again, as sequential does
        resume = False
        if console:
            console.print("no interrupted session was saved (if one was stopped, it was before its files were "
                          "written): the session starts from the beginning")
    if part.exists() and not resume:
        raise UserError(f"session {read_json(part / 'session.json')['id']} of '{store.name}' was interrupted; carry it "
                        f"on with `forgetlab session train --assistant {store.name} --resume` or delete {part}")
    if resume:
        record, job = resume_record(store, data)
        cfg = SessionConfig.model_validate(record["config"])
    else:
        record, job = new_record(store, cfg, data, heldout)
    chain = store.chain(record["parent"])

    # The model of the sessions so far, and every setting resolved once from the data.
    t0 = time.perf_counter()
    base: dict = {}  # the anchors, answered by the base model before the sessions are applied
    model, tok = load_chain(store, store.links(record["parent"], record.get("parent_epoch")), tier_model(cfg), cfg.mode,
                            on_base=lambda m, t: base.update(
        anchors=build_anchors(m, t, ANCHOR_LENGTH, questions=True) if cfg.anchor > 0 else None))
    old = [ex for j in chain for ex in load_examples(store.session_dir(j) / "train.jsonl")]
    plan = resolve(cfg, job.records, [len(encode(tok, ex, 10**9).input_ids) for ex in job.rows], len(old))
    record["settings"] = plan.as_dict()
    if not resume:
        write_text(part / "train.jsonl", write_jsonl_text(job.rows))
        write_text(part / "heldout.jsonl", write_jsonl_text(job.checks))
        write_json(part / "session.json", record)
    print_settings(console, record, plan, cfg.mode)
    if not store.exists():
        store.create(cfg.model.name, cfg.mode)  # only once the model has loaded: a bad --model leaves nothing behind
    try:
        before = dict(qa_scores_of_sets(model, tok, {"new": job.checks}, cfg.max_new_tokens)["new"],
                      general=general_score(model, tok, cfg.general) if cfg.general.enabled else None)
        model, history = fit(store, record, plan, model, tok, job.rows, old, base["anchors"], resume, console)
        return save(store, record, plan, chain, model, tok, job.checks, history, before, cfg, t0)
    except KeyboardInterrupt:
        raise Interrupted(part, resume_command=f"forgetlab session train --assistant {store.name} "
                          f"--home {store.path.parent} --resume") from None


def tier_model(cfg: SessionConfig) -> ModelConfig:
    """The model settings a session trains with: `--preset size-tiers` asks for bf16 where the device runs it (CUDA,
    MPS) where the dtype is left at auto; float32 on the CPU, where bf16 matmuls are many times slower."""
    if cfg.preset != "size-tiers" or cfg.model.dtype != "auto":
        return cfg.model
    device = resolve_device(cfg.model.device)
    return cfg.model.model_copy(update={"dtype": "bfloat16" if device.type in ("cuda", "mps") else "float32"})


def fit(store: Store, record: dict, plan: Plan, model, tok, rows: list[Example], old: list[Example],
        anchors: Anchors | None, resume: bool, console):
    """Train a new adapter for session k on `rows` (resuming from the epoch checkpoint); return (model, history)."""
    part, k = store.partial_dir, record["id"]
    encoded = [encode(tok, ex, plan.max_length) for ex in rows]
    old_encoded = [encode(tok, ex, plan.max_length) for ex in old]
    torch.manual_seed(plan.seed * 1000 + k)
    model = add_session_adapter(model, k, plan.lora)
    if plan.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ckpt = load_checkpoint(part, model) if resume else None
    batches_per_epoch = -(-len(encoded) // plan.batch_size)
    previous = TopKReference.build(model, old_encoded, [adapter_key(k)], tok.pad_token_id) \
        if plan.distill > 0 and plan.replay_per_batch else None
    method = SessionLoss(old_encoded, plan.replay_per_batch, plan.seed * 1000 + k, tok.pad_token_id,
                         start_batch=(ckpt["epoch"] if ckpt else 0) * batches_per_epoch, distill=plan.distill,
                         previous=previous, anchors=anchors, anchor_weight=plan.anchor)
    with StepProgress(console).task(f"session {k} {record['data']['name']}", plan.total_steps) as tick:
        for row in ckpt["history"] if ckpt else []:
            tick(row)
        history = train(model, encoded, plan.train, method, None, tok.pad_token_id, seed=plan.seed + k,
                        on_step=tick, on_epoch=lambda c: save_epoch(part, model, k, c, record["config"].get("keep_epochs", 2),
                                                       plan.epochs),
                        resume=ckpt)
    if plan.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    return model, history


def save(store: Store, record: dict, plan: Plan, chain: list[int], model, tok, checks: list[Example],
         history: list[dict], before: dict, cfg: SessionConfig, t0: float) -> dict:
    """Score every session's check questions, write the session's files, publish it in one rename, make it active."""
    part, k = store.partial_dir, record["id"]
    sets = {str(j): load_examples(store.session_dir(j) / "heldout.jsonl") for j in chain
            if (store.session_dir(j) / "heldout.jsonl").stat().st_size}
    retention = qa_scores_of_sets(model, tok, dict(sets, **{str(k): checks}), cfg.max_new_tokens)  # one pass
    general = general_score(model, tok, cfg.general) if cfg.general.enabled else None
    record.update(status="done", finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                  train_seconds=sum(r["tokens"] / r["tokens_per_s"] for r in history if r["tokens_per_s"]),
                  wall_seconds=record.get("wall_seconds", 0.0) + time.perf_counter() - t0,
                  peak_memory_mb=peak_memory_mb(model), final_loss=history[-1]["loss"] if history else None)
    record["warnings"] = retention_warnings(store, chain, retention, record["config"]["warn_drop"])
    save_session_adapter(model, k, part / "adapter")
    write_json(part / "metrics.json", {"before": before, "retention": retention, "general": general,
                                       "version": __version__})
    write_csv(part / "history.csv", list(history[0]) if history else ["step"], [list(r.values()) for r in history])
    write_text(part / "train.log", log_text(record, history, retention))
    write_json(part / "session.json", record)
    (part / "checkpoint.pt").unlink(missing_ok=True)
    store.finish(k)
    write_report(store)
    return record


def new_record(store: Store, cfg: SessionConfig, data: str | None, heldout: str | None) -> tuple[dict, SessionData]:
    """Validate the files and the assistant's settings; return the session record and its data."""
    if not data:
        raise UserError("no data file given; pass a JSON or JSONL file of instruction/response records")
    examples = load_examples(data)
    if store.exists():
        info = store.info()
        for key, value in (("model", cfg.model.name), ("mode", cfg.mode)):
            if value != info[key]:
                raise UserError(f"assistant '{store.name}' uses {key} '{info[key]}', not '{value}'; drop the --{key} "
                                "flag or start a new assistant")
    else:
        info = {"active": None}
    job = session_data(examples, cfg, heldout)
    record = {"id": store.next_id(), "parent": info["active"], "parent_epoch": info.get("active_epoch"),
              "assistant": store.name, "status": "training",
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "version": __version__,
              "data": {"name": Path(data).name, "path": str(Path(data).expanduser().resolve()), "sha256": file_hash(data),
                       "records": len(examples), "train": job.records, "rows": len(job.rows), "heldout": len(job.checks),
                       "heldout_from": job.check_source},
              "config": cfg.model_dump(mode="json")}
    return record, job


def session_data(examples: list[Example], cfg: SessionConfig, heldout: str | None) -> SessionData:
    """Rows to train (every record, rephrased) and the check questions: the --heldout file, else the file's own
    paraphrases (records whose answer another record gives), else phrasings made here and not trained."""
    if heldout:
        train_ex, checks, source = examples, load_examples(heldout), f"your file {Path(heldout).name}"
    else:
        train_ex, checks = split_heldout(examples, cfg.holdout, cfg.seed)
        source = f"paraphrases held out from the file ({len(checks)} of {len(examples)})"
    rows, made = rephrased(train_ex, cfg.rephrase, cfg.seed)
    if not checks:
        checks = made
        n = sum(ex.meta["check"] == "rephrased" for ex in made)
        source = f"{n} questions rephrased by forgetlab (not trained)" if n == len(made) else \
            f"{n} questions rephrased by forgetlab (not trained), {len(made) - n} trained questions"
    return SessionData(rows, checks, len(train_ex), source)


def can_resume(store: Store) -> bool:
    """Whether an interrupted session left what carrying it on needs (its record and training rows)."""
    part = store.partial_dir
    return (part / "session.json").is_file() and (part / "train.jsonl").is_file()


def resume_record(store: Store, data: str | None) -> tuple[dict, SessionData]:
    part = store.partial_dir
    if not part.exists():
        raise UserError(f"nothing to resume for '{store.name}' (no session was interrupted after its files were "
                        f"saved); give the file to start it again: `forgetlab session train FILE --assistant "
                        f"{store.name} --resume`")
    record = read_json(part / "session.json")
    if data and file_hash(data) != record["data"]["sha256"]:
        raise UserError(f"{data} is not the file the interrupted session {record['id']} started with "
                        f"({record['data']['name']}); run --resume without a file")
    checks = load_examples(part / "heldout.jsonl") if (part / "heldout.jsonl").stat().st_size else []
    return record, SessionData(load_examples(part / "train.jsonl"), checks, record["data"]["train"],
                               record["data"]["heldout_from"])


def retention_warnings(store: Store, chain: list[int], retention: dict, threshold: float) -> list[str]:
    """A line for each earlier session whose recall (answers containing the reference) fell more than `threshold`
    below what it was right after that session."""
    out = []
    for j in chain:
        own = read_json(store.session_dir(j) / "metrics.json")["retention"].get(str(j), {}).get("contains")
        now = retention.get(str(j), {}).get("contains")
        if own is not None and now is not None and own - now > threshold:
            out.append(f"session {j}: recall fell from {own:.2f} to {now:.2f} (more than {threshold:g})")
    return out


def save_epoch(part: Path, model, k: int, ckpt: dict, keep: int, total: int) -> None:
    """After an epoch: its adapter among the last `keep` kept (`session rollback --epoch`; the last epoch's is the
    session's own adapter, not kept twice), then the resume checkpoint."""
    if keep and ckpt["epoch"] < total:
        save_session_adapter(model, k, epoch_dir(part, ckpt["epoch"]) / "adapter")
        kept = sorted(int(p.name) for p in (part / "epochs").iterdir() if p.name.isdigit())
        for old in kept[:-keep]:
            shutil.rmtree(epoch_dir(part, old))
    save_checkpoint(part, model, ckpt)


def save_checkpoint(part: Path, model, ckpt: dict) -> None:
    """Write the epoch checkpoint atomically: weights of the new adapter, optimizer, scheduler, RNG, history."""
    state = dict(ckpt, adapter=adapter_state(model))
    atomic_file(part / "checkpoint.pt", lambda tmp: torch.save(state, tmp))


def load_checkpoint(part: Path, model) -> dict | None:
    path = part / "checkpoint.pt"
    if not path.is_file():
        return None
    ckpt = torch.load(path, weights_only=False)
    load_adapter_state(model, ckpt["adapter"])
    return ckpt


def print_settings(console, record: dict, plan: Plan, mode: str) -> None:
    from rich.table import Table

    if console is None:
        return
    d = record["data"]
    console.print(f"[bold]session {record['id']}[/] of '{record['assistant']}' on {d['name']}: {d['train']} records to "
                  f"train; recall checked on {d['heldout_from']}; built on session {record['parent'] or 'none (base)'}"
                  + (f" at epoch {record['parent_epoch']}" if record.get("parent_epoch") is not None else ""))
    table = Table("setting", "value", "from", title="Settings (override with the flags or --set)")
    for name, value, src in plan.table(mode):
        table.add_row(name, value, src)
    console.print(table)


def log_text(record: dict, history: list[dict], retention: dict) -> str:
    lines = [f"session {record['id']} of {record['assistant']}: {record['data']['name']} ({record['data']['sha256'][:12]})",
             f"settings: {record['settings']}", f"wall {record['wall_seconds']:.1f} s"]
    lines += [f"step {r['step']:>4} epoch {r['epoch']:>2} loss {r['loss']:.4f} lr {r['lr']:.2e}" for r in history]
    lines += [f"retention on session {j}: f1 {v.get('f1', float('nan')):.3f} contains {v.get('contains', float('nan')):.3f}"
              for j, v in retention.items()]
    lines += record["warnings"]
    return "\n".join(lines) + "\n"
