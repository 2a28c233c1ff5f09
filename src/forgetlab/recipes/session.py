"""`forgetlab session train`: train the next session of an assistant on a new Q&A file, keeping the earlier ones.

Reads top to bottom: validate the data → settings from its size → build the model of the sessions so far → score
the new held-out questions before training → add a new adapter → train (earlier sessions' data replayed, a
checkpoint after every epoch) → score every session's held-out questions → save the session → make it active.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from .. import __version__
from ..batching import encode
from ..config import SessionConfig
from ..data.general import retention_examples
from ..errors import Interrupted, UserError
from ..evaluate import generate_answers, qa_scores
from ..loop import train
from ..metrics.qa import contains, exact_match, token_f1
from ..model import adapter_state, load_adapter_state
from ..report import StepProgress
from ..runs import peak_memory_mb, read_json, write_csv, write_json, write_text
from ..sessions.answers import tidy
from ..sessions.compose import add_session_adapter, load_chain, save_session_adapter
from ..sessions.data import file_hash, load_examples, split_heldout, write_jsonl_text
from ..sessions.replay import SessionLoss, base_anchors
from ..sessions.settings import resolve
from ..sessions.store import Store


def train_session(store: Store, cfg: SessionConfig, data: str | None, heldout: str | None = None,
                  resume: bool = False, console=None) -> dict:
    """Train session k (the next one) of `store`'s assistant; return its session.json record."""
    # The data and the session's place: every problem found before a model is loaded.
    part = store.partial_dir
    if part.exists() and not (part / "session.json").is_file():
        shutil.rmtree(part)  # a session that stopped before its first file was complete: nothing to resume
    if part.exists() and not resume:
        raise UserError(f"session {read_json(part / 'session.json')['id']} of '{store.name}' was interrupted; carry it "
                        f"on with `forgetlab session train --assistant {store.name} --resume` or delete {part}")
    if resume:
        record, train_ex, held_ex = resume_record(store, data)
        cfg = SessionConfig.model_validate(record["config"])
    else:
        record, train_ex, held_ex, cfg = new_record(store, cfg, data, heldout)
    chain = store.chain(record["parent"])

    # The model of the sessions so far; the new held-out questions scored before training.
    t0 = time.perf_counter()
    model, tok = load_chain(store, chain, cfg.model, cfg.mode)
    encoded = [encode(tok, ex, 10**9) for ex in train_ex]
    settings = resolve(cfg, [len(e.input_ids) for e in encoded])
    record["settings"] = settings.as_dict()
    if not resume:
        write_text(part / "train.jsonl", write_jsonl_text(train_ex))
        write_text(part / "heldout.jsonl", write_jsonl_text(held_ex))
        write_json(part / "session.json", record)
    print_settings(console, record, settings, cfg)
    if not store.exists():
        store.create(cfg.model.name, cfg.mode)  # only once the model has loaded: a bad --model leaves nothing behind
    try:
        before = dict(score(model, tok, held_ex, cfg.max_new_tokens), general=general_score(model, tok))
        return fit_and_save(store, cfg, record, chain, model, tok, train_ex, held_ex, settings, before, resume,
                            console, t0)
    except KeyboardInterrupt:
        raise Interrupted(part, resume_command=f"forgetlab session train --assistant {store.name} "
                          f"--home {store.path.parent} --resume") from None


def fit_and_save(store: Store, cfg: SessionConfig, record: dict, chain: list[int], model, tok, train_ex, held_ex,
                 settings, before: dict, resume: bool, console, t0: float) -> dict:
    """Train the new adapter (resuming from the epoch checkpoint), score retention, save, make the session active."""
    part, k = store.partial_dir, record["id"]
    # A new adapter on top; earlier sessions' records replayed in every batch.
    encoded = [encode(tok, ex, settings.max_length) for ex in train_ex]
    old = [encode(tok, ex, settings.max_length) for j in chain for ex in load_examples(store.session_dir(j) / "train.jsonl")]
    anchors = anchor_targets(store, chain, cfg, model, tok, settings.max_length) if cfg.anchor > 0 else None
    torch.manual_seed(cfg.seed * 1000 + k)
    model = add_session_adapter(model, k, settings.lora(cfg))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ckpt = load_checkpoint(part, model) if resume else None
    batches_per_epoch = -(-len(encoded) // settings.batch_size)
    method = SessionLoss(old, cfg.replay if old else 0.0, cfg.seed * 1000 + k, tok.pad_token_id,
                         start_batch=(ckpt["epoch"] if ckpt else 0) * batches_per_epoch, anchors=anchors,
                         anchor_weight=cfg.anchor)
    with StepProgress(console).task(f"session {k} {record['data']['name']}", settings.total_steps) as tick:
        if ckpt:
            tick_many(tick, ckpt["history"])
        history = train(model, encoded, settings.train(cfg), method, None, tok.pad_token_id, seed=cfg.seed + k,
                        on_step=tick, on_epoch=lambda c: save_checkpoint(part, model, c), resume=ckpt)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_disable()

    # Retention: every session's held-out questions, this one's included.
    retention = {str(j): score(model, tok, load_examples(store.session_dir(j) / "heldout.jsonl"), cfg.max_new_tokens)
                 for j in chain if (store.session_dir(j) / "heldout.jsonl").stat().st_size}
    retention[str(k)] = score(model, tok, held_ex, cfg.max_new_tokens)
    general = general_score(model, tok)
    record.update(status="done", finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                  train_seconds=sum(r["tokens"] / r["tokens_per_s"] for r in history if r["tokens_per_s"]),
                  wall_seconds=record.get("wall_seconds", 0.0) + time.perf_counter() - t0,
                  peak_memory_mb=peak_memory_mb(model), final_loss=history[-1]["loss"] if history else None)
    record["warnings"] = retention_warnings(store, chain, retention, cfg.warn_drop)

    # Save: the adapter, metrics, history and log, then the session appears in one rename and becomes active.
    save_session_adapter(model, k, part / "adapter")
    write_json(part / "metrics.json", {"before": before, "retention": retention, "general": general,
                                       "version": __version__})
    write_csv(part / "history.csv", list(history[0]) if history else ["step"], [list(r.values()) for r in history])
    write_text(part / "train.log", log_text(record, history, retention))
    write_json(part / "session.json", record)
    (part / "checkpoint.pt").unlink(missing_ok=True)
    store.finish(k)
    return record


def new_record(store: Store, cfg: SessionConfig, data: str | None, heldout: str | None):
    """Validate the files and the assistant's settings; return (record, train, held-out, effective config)."""
    if not data:
        raise UserError("no data file given; pass a JSON or JSONL file of instruction/response records")
    examples = load_examples(data)
    if heldout:
        train_ex, held_ex = examples, load_examples(heldout)
    else:
        train_ex, held_ex = split_heldout(examples, cfg.holdout, cfg.seed)
    if store.exists():
        info = store.info()
        for key, value in (("model", cfg.model.name), ("mode", cfg.mode)):
            if value != info[key]:
                raise UserError(f"assistant '{store.name}' uses {key} '{info[key]}', not '{value}'; drop the --{key} "
                                "flag or start a new assistant")
    else:
        info = {"active": None}
    k = store.next_id()
    record = {"id": k, "parent": info["active"], "assistant": store.name, "status": "training",
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "version": __version__,
              "data": {"name": Path(data).name, "path": str(Path(data).expanduser().resolve()), "sha256": file_hash(data),
                       "records": len(examples), "train": len(train_ex), "heldout": len(held_ex),
                       "heldout_from": str(Path(heldout).resolve()) if heldout else f"{cfg.holdout:.0%} of the file"},
              "config": cfg.model_dump(mode="json")}
    return record, train_ex, held_ex, cfg


def resume_record(store: Store, data: str | None):
    part = store.partial_dir
    if not (part / "session.json").is_file() or not (part / "train.jsonl").is_file():
        raise UserError(f"nothing to resume for '{store.name}'; start a session with `forgetlab session train FILE "
                        f"--assistant {store.name}`")
    record = read_json(part / "session.json")
    if data and file_hash(data) != record["data"]["sha256"]:
        raise UserError(f"{data} is not the file the interrupted session {record['id']} started with "
                        f"({record['data']['name']}); run --resume without a file")
    return record, load_examples(part / "train.jsonl"), \
        (load_examples(part / "heldout.jsonl") if (part / "heldout.jsonl").stat().st_size else [])


def score(model, tok, examples, max_new_tokens: int) -> dict:
    """Mean normalised exact match, contains and token F1 of greedy (tidied) answers; n = number of questions."""
    if not examples:
        return {"n": 0}
    answers = [tidy(a) for a in generate_answers(model, tok, examples, max_new_tokens)]
    pairs = list(zip(answers, [ex.target for ex in examples], strict=True))
    n = len(pairs)
    return {"n": n, "exact": sum(exact_match(a, t) for a, t in pairs) / n,
            "contains": sum(contains(a, t) for a, t in pairs) / n, "f1": sum(token_f1(a, t) for a, t in pairs) / n,
            "answers": answers}


def anchor_targets(store: Store, chain: list[int], cfg: SessionConfig, model, tok, max_length: int):
    """What the base model answers on the anchor prompts (the model in hand for a first session, else a fresh base)."""
    from ..model import load_base

    if not chain:
        return base_anchors(model, tok, max_length)
    base, _ = load_base(cfg.model)
    try:
        return base_anchors(base, tok, max_length)
    finally:
        del base


def general_score(model, tok) -> float:
    """Share of 28 built-in general questions ("What is the capital of Japan?") answered right: what the base model
    knew and a session may have overwritten."""
    return qa_scores(model, tok, retention_examples(), max_new_tokens=12)["contains"]


def retention_warnings(store: Store, chain: list[int], retention: dict, threshold: float) -> list[str]:
    """A line for each earlier session whose held-out F1 fell more than `threshold` below its own score."""
    out = []
    for j in chain:
        own = read_json(store.session_dir(j) / "metrics.json")["retention"].get(str(j), {}).get("f1")
        now = retention.get(str(j), {}).get("f1")
        if own is not None and now is not None and own - now > threshold:
            out.append(f"session {j}: held-out F1 fell from {own:.3f} to {now:.3f} (more than {threshold:g})")
    return out


def save_checkpoint(part: Path, model, ckpt: dict) -> None:
    """Write the epoch checkpoint atomically: weights of the new adapter, optimizer, scheduler, RNG, history."""
    tmp = part / ".checkpoint.pt.tmp"
    torch.save(dict(ckpt, adapter=adapter_state(model)), tmp)
    tmp.replace(part / "checkpoint.pt")


def load_checkpoint(part: Path, model) -> dict | None:
    path = part / "checkpoint.pt"
    if not path.is_file():
        return None
    ckpt = torch.load(path, weights_only=False)
    load_adapter_state(model, ckpt["adapter"])
    return ckpt


def tick_many(tick, rows: list[dict]) -> None:
    for row in rows:
        tick(row)


def print_settings(console, record: dict, s, cfg: SessionConfig) -> None:
    from rich.table import Table

    if console is None:
        return
    d = record["data"]
    console.print(f"[bold]session {record['id']}[/] of '{record['assistant']}' on {d['name']}: {d['train']} records to "
                  f"train, {d['heldout']} held out ({d['heldout_from']}); built on session {record['parent'] or 'none (base)'}")
    table = Table("setting", "value", "from", title="Settings (override with the flags or --set)")
    rows = [("rank / alpha", f"{s.rank} / {s.alpha:g}", s.source["rank"]), ("epochs", s.epochs, s.source["epochs"]),
            ("batch × accumulation", f"{s.batch_size} × {s.grad_accum}", s.source["batch_size"]),
            ("max length", f"{s.max_length} tokens ({s.over_length} records longer, cut)", s.source["max_length"]),
            ("warmup / total steps", f"{s.warmup_steps} / {s.total_steps}, cosine", s.source["warmup_steps"]),
            ("learning rate", f"{s.lr:g}", s.source["lr"]), ("mode", cfg.mode, "assistant"),
            ("replay", f"{cfg.replay:.0%} of each batch" if record["parent"] else "- (first session)", "config")]
    for name, value, src in rows:
        table.add_row(name, str(value), src)
    console.print(table)


def log_text(record: dict, history: list[dict], retention: dict) -> str:
    lines = [f"session {record['id']} of {record['assistant']}: {record['data']['name']} ({record['data']['sha256'][:12]})",
             f"settings: {record['settings']}", f"wall {record['wall_seconds']:.1f} s"]
    lines += [f"step {r['step']:>4} epoch {r['epoch']:>2} loss {r['loss']:.4f} lr {r['lr']:.2e}" for r in history]
    lines += [f"retention on session {j}: f1 {v.get('f1', float('nan')):.3f} contains {v.get('contains', float('nan')):.3f}"
              for j, v in retention.items()]
    lines += record["warnings"]
    return "\n".join(lines) + "\n"
