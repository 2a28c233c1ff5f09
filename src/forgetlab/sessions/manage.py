"""`forgetlab session list / rollback / export`, and the loader the server and chat use."""

from __future__ import annotations

import time
from pathlib import Path

from ..config import ModelConfig
from ..errors import UserError
from ..runs import read_json
from .compose import export_adapter, export_merged, load_chain
from .holder import Loaded
from .store import Store


def session_rows(store: Store) -> list[dict]:
    """Every finished session with its record, metrics and place (active / in the active chain / rolled back)."""
    info = store.info()
    chain = store.chain(info["active"])
    rows = []
    for k in store.ids():
        record = store.session(k)
        metrics = read_json(store.session_dir(k) / "metrics.json")
        state = "active" if k == info["active"] else "in use" if k in chain else "rolled back"
        rows.append({"id": k, "state": state, "record": record, "metrics": metrics})
    return rows


def retention_matrix(store: Store, metric: str = "contains") -> tuple[list[int], list[list]]:
    """(columns, rows) for the active chain: row "before" (each session's check questions scored by the model it
    started from, the base for session 1), then one row per session k with session j's score after k: recall
    (`contains`: the answer contains the reference, e.g. the key fact) by default. The last column is the share of
    built-in general questions answered (the base model's knowledge)."""
    chain = store.chain(store.info()["active"])
    metrics = {k: read_json(store.session_dir(k) / "metrics.json") for k in chain}
    before = ["before"] + [metrics[j]["before"].get(metric) for j in chain] + [metrics[chain[0]]["before"].get("general")]
    rows = [before]
    for k in chain:
        rows.append([f"after {k}"] + [metrics[k]["retention"].get(str(j), {}).get(metric) if j <= k else None for j in chain]
                    + [metrics[k].get("general")])
    return chain, rows


SESSION_HEADER = ["session", "state", "on", "data", "records/rows/checks", "rank", "epochs", "lr", "replay", "loss",
                  "time s", "finished"]


def sessions_table(store: Store) -> list[list[str]]:
    """One row per finished session under SESSION_HEADER: `session list` prints it, the assistant's report shows it."""
    from ..report import fmt

    out = []
    for r in session_rows(store):
        rec, s = r["record"], r["record"]["settings"]
        out.append([str(r["id"]), r["state"], str(rec["parent"] or "base"), rec["data"]["name"],
                    f"{rec['data']['train']}/{rec['data'].get('rows', rec['data']['train'])}/{rec['data']['heldout']}",
                    str(s["rank"]), str(s["epochs"]), f"{s['lr']:g}",
                    f"{s['replay']:.0%}" if rec["parent"] and "replay" in s else "-", fmt(rec.get("final_loss")),
                    f"{rec['wall_seconds']:.0f}", rec["finished"]])
    return out


def write_report(store: Store) -> Path:
    """`<assistant>/report.html`: the sessions, the retention of every session's check questions after each one (a
    table and a plot), the active session's settings and the definitions; rewritten after each session and rollback."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..report import save_plot, write_page

    info = store.info()
    chain, rows = retention_matrix(store)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for n, j in enumerate(chain):
        ax.plot([k for k in chain if k >= j], [rows[1 + m][1 + n] for m, k in enumerate(chain) if k >= j], marker="o",
                label=f"session {j}'s questions")
    ax.plot(chain, [r[-1] for r in rows[1:]], "k--", marker=".", label="general questions")
    ax.set_xticks(chain)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("after session")
    ax.set_ylabel("recall")
    ax.legend(fontsize=8)
    plots = [save_plot(fig, store.path / "retention.png", "Retention after each session")]
    active = store.session(info["active"])["settings"]
    keys = ("rank", "alpha", "epochs", "lr", "batch_size", "replay", "distill", "anchor", "rephrase")
    settings = {"base model": info["model"], "mode": info["mode"], "active session": info["active"],
                **{f"session {info['active']}: {k}": active[k] for k in keys if k in active}}
    return write_page(store.path, f"forgetlab session: assistant {store.name}",
                      f"{len(chain)} session(s) in the active chain; check questions: "
                      + "; ".join(f"session {k}: {store.session(k)['data']['heldout_from']}" for k in chain),
                      [("Sessions", SESSION_HEADER, sessions_table(store)),
                       ("Retention (recall of each session's check questions; general)",
                        ["recall", *[f"session {j}" for j in chain], "general"], rows)],
                      plots, settings=settings, terms=["recall", "general"])


def rollback(store: Store, to: int, epoch: int | None = None) -> dict:
    """Make session `to` the active one (later sessions stay on disk), at one of its kept epochs where `epoch` is
    given; return its record."""
    record = store.session(to)
    if epoch is not None and epoch != record["settings"]["epochs"]:
        kept = store.kept_epochs(to)
        if epoch not in kept:
            raise UserError(f"session {to} of '{store.name}' can return to epochs "
                            f"{', '.join(map(str, [*kept, record['settings']['epochs']]))} (the last is the session "
                            f"itself), not epoch {epoch}; more are kept with --set keep_epochs=N when a session is trained")
    else:
        epoch = None  # the final epoch is the session's own adapter
    store.set_active(to, epoch)
    write_report(store)
    return record


def export(store: Store, out: str, session: int | None = None, device: str = "cpu", kind: str = "merged") -> Path:
    """Write the model of `session` (default: the active one): every adapter merged, as a plain HF directory
    (`kind` merged); its adapters combined into one PEFT adapter directory, for a server that applies LoRA adapters
    to a shared base, such as vLLM's (adapter); or the assistant's base model alone, the base such a server loads
    (base)."""
    info = store.info()
    if kind == "base":
        from ..model import load_base

        model, tok = load_base(ModelConfig(name=info["model"], device="cpu", dtype="float32"))
        meta = {"assistant": store.name, "base_model": info["model"], "exported": time.strftime("%Y-%m-%d %H:%M:%S")}
        return export_merged(model, tok, Path(out), meta)
    k = info["active"] if session is None else session
    if k is None:
        raise UserError(f"assistant '{store.name}' has no session to export; train one first")
    chain = store.links(k, info.get("active_epoch") if session is None else None)
    if kind == "adapter":
        meta = {"assistant": store.name, "session": k, "chain": list(chain), "base_model": info["model"],
                "exported": time.strftime("%Y-%m-%d %H:%M:%S")}
        return export_adapter([store.adapter_path(j, e) for j, e in chain.items()], Path(out), meta)
    model, tok = load_chain(store, chain, ModelConfig(name=info["model"], device=device, dtype="float32"), info["mode"])
    meta = {"assistant": store.name, "session": k, "chain": list(chain),
            **({"epochs": {str(j): e for j, e in chain.items() if e is not None}} if any(chain.values()) else {}),
            "base_model": info["model"],
            "exported": time.strftime("%Y-%m-%d %H:%M:%S")}
    return export_merged(model, tok, Path(out), meta)


def open_assistant(home: str | None, name: str | None, model: ModelConfig, session: int | None = None,
                   learning: bool = False):
    """(store or None, holder) for chat and serve: assistant `name`'s active session (or session `session`), or with
    no name the `model` alone (served as 'bundled'). With learning on, a new name starts an assistant with no session
    yet: it learns on `model`. `model.device` and `model.dtype` place whichever model loads."""
    from ..model import load_base
    from .holder import ModelHolder

    if name is None:
        if session is not None:
            raise UserError("--session needs --assistant")
        return None, ModelHolder(lambda: Loaded(*load_base(model), "bundled", None, time.time()))
    store = Store(home, name)
    if learning and not store.exists():
        holder = ModelHolder(lambda: Loaded(*load_base(model), store.name, None, time.time()))
        store.create(model.name, "merge")  # only once the model has loaded
        return store, holder
    if not learning:
        check_served(store, session)
    return store, ModelHolder(loader(store, device=model.device, dtype=model.dtype, session=session))


def check_served(store: Store, session: int | None) -> None:
    if store.info()["active"] is None and session is None:
        raise UserError(f"assistant '{store.name}' has no session yet; train one with `forgetlab session train`")


def open_shared(home: str | None, names: list[str], model: ModelConfig, max_batch: int,
                session: int | None = None) -> tuple[list[Store], list]:
    """(stores, holders) for serving several assistants on one shared base model (`shared.py`), their requests
    decoded by one scheduler (`max_batch`) under one lock."""
    from .holder import ModelHolder
    from .shared import SharedBase

    stores = [Store(home, n) for n in names]
    for store in stores:
        check_served(store, session)
    base = SharedBase(model)
    holders = [ModelHolder(base.loader(store, session), lock=base.lock) for store in stores]
    base.scheduler = holders[0].batch(max_batch)
    for h in holders[1:]:
        h.batch(max_batch, base.scheduler)
    return stores, holders


def loader(store: Store, device: str = "auto", dtype: str = "auto", session: int | None = None):
    """A function that loads the assistant's active session (or a fixed one) now: what ModelHolder reloads with."""
    def load() -> Loaded:
        info = store.info()
        k = info["active"] if session is None else session
        chain = store.links(k, info.get("active_epoch") if session is None else None)
        model, tok = load_chain(store, chain, ModelConfig(name=info["model"], device=device, dtype=dtype), info["mode"])
        return Loaded(model, tok, store.name, k, time.time())

    return load
