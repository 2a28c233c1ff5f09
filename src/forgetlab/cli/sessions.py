"""`forgetlab session train/list/rollback/compare/export`: thin over sessions/ and recipes/."""

from __future__ import annotations

import argparse

from ..config import SESSION_SETTINGS, SessionCompareConfig, SessionConfig, build_config, parse_set, read_yaml
from ..errors import UserError
from .common import add_assistant_args, add_executor_args, config_epilog, default_of, executor_flags, given, grid_exit, terminal

SESSION_EXAMPLES = """examples:
  forgetlab session train cs_dept.json --assistant msu          # session 1
  forgetlab session train housing.json --assistant msu          # session 2: keeps session 1
  forgetlab session list --assistant msu
  forgetlab session rollback --assistant msu --to 1
  forgetlab session export --assistant msu --merged out/
"""


def add_session(sub) -> None:
    p = sub.add_parser("session", help="keep a domain assistant learning from new Q&A files, session after session",
                       description="Each session trains a new LoRA adapter on a Q&A file on top of the earlier sessions, "
                       "checks that their held-out questions are still answered, and can be rolled back or exported.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SESSION_EXAMPLES)
    ss = p.add_subparsers(dest="session_command", metavar="ACTION", parser_class=type(p))
    ss.required = True
    t = ss.add_parser("train", help="train the next session on a JSON/JSONL file of Q&A records",
                      description="Train the next session: validate the file, choose settings from its size (printed, "
                      "each overridable), train a new adapter on top of the earlier sessions (earlier data replayed), "
                      "then score every session's held-out questions. Ctrl-C keeps the last epoch: --resume carries on."
                      "\n\nSettings by the file's size (records < 100 / 100-500 / > 500): LoRA rank 8 / 16 / 32 (alpha "
                      "2 × rank), max length 512 / 640 / 768, epochs 5 / 3 / 2 with rephrasings (the default, 3 per "
                      "record) and 10 / 5 / 3 without (--rephrase 0); effective batch 8. --preset size-tiers: "
                      "heavier tiers by size (epochs 10 / 5 / 3 always, batch × accumulation 2×4 / 2×4 / "
                      "4×2, warmup min(0.1 × rows, 50), gradient checkpointing, bf16 on CUDA and MPS).",
                      formatter_class=argparse.RawDescriptionHelpFormatter,
                      epilog=SESSION_EXAMPLES + "\n" + config_epilog(SessionConfig))
    t.add_argument("data", nargs="?", metavar="FILE", help="JSON array or JSONL of {instruction, response}, "
                   "{input, output} or {messages} records")
    add_assistant_args(t)
    t.add_argument("--heldout", metavar="FILE", help="questions to check retention with (e.g. paraphrases), same "
                   "format; then every record of FILE is trained on")
    t.add_argument("--mode", choices=["merge", "stack"], help="merge earlier adapters into the base (float32) or "
                   f"keep them stacked; fixed by the first session [default: {default_of(SessionConfig, 'mode')}]")
    t.add_argument("--replay", type=float, metavar="SHARE", help="share of each batch from earlier sessions "
                   "[default: old / (old + new) rows, at most 0.5]")
    t.add_argument("--distill", type=float, metavar="LAMBDA", help="KL to the previous session on the replayed rows "
                   f"[default: {default_of(SessionConfig, 'distill')}]")
    t.add_argument("--anchor", type=float, metavar="LAMBDA", help="KL to the base model on 32 built-in prompts, "
                   f"keeps general knowledge [default: {default_of(SessionConfig, 'anchor')}]")
    t.add_argument("--rephrase", type=int, metavar="N", help="extra phrasings made for each question "
                   f"[default: {default_of(SessionConfig, 'rephrase')}]")
    t.add_argument("--holdout", type=float, metavar="SHARE", help="share of FILE held out, only questions whose "
                   f"answer another record also gives [default: {default_of(SessionConfig, 'holdout')}]")
    for flag, kind, key in (("--rank", int, "lora.rank"), ("--alpha", float, "lora.alpha"), ("--epochs", int, "epochs"),
                            ("--lr", float, "lr"), ("--batch-size", int, "batch_size"), ("--grad-accum", int, "grad_accum"),
                            ("--max-length", int, "max_length"), ("--warmup-steps", int, "warmup_steps"),
                            ("--seed", int, "seed")):
        default = default_of(SessionConfig, key)
        t.add_argument(flag, type=kind, help=f"writes {key} [default: "
                       + ("chosen from the data's size, see below" if default == "None" else default) + "]")
    t.add_argument("--gradient-checkpointing", action="store_true", help="less memory, about a third slower")
    t.add_argument("--preset", choices=["size-tiers"], help="size-tiers: heavier training tiers by size in place of the "
                   "measured default (see above)")
    t.add_argument("--model", help="base model of a new assistant: 'bundled', a hub id or a local HF directory")
    t.add_argument("--config", metavar="YAML", help="session settings file (keys below)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (repeat)")
    t.add_argument("--resume", action="store_true", help="carry on the interrupted session from its last epoch")
    t.set_defaults(func=cmd_train)

    ls = ss.add_parser("list", help="sessions, their data and settings, and the retention table",
                       description="List the sessions (active, in use, rolled back) and the retention table: rows "
                       "'after session k', columns the held-out questions of session j (token F1).")
    add_assistant_args(ls)
    ls.set_defaults(func=cmd_list)

    rb = ss.add_parser("rollback", help="make an earlier session the active one",
                       description="Serve and train on top of session K again (--epoch E: as it was after epoch E). "
                       "Later sessions stay on disk; rolling back to one of them restores it. A running server switches "
                       "on POST /admin/reload.")
    add_assistant_args(rb)
    rb.add_argument("--to", type=int, required=True, metavar="K", help="session number")
    rb.add_argument("--epoch", type=int, metavar="E", help="session K as it was after epoch E: one of the keep_epochs "
                    "(2 by default) epochs before its last, which is the session itself")
    rb.set_defaults(func=cmd_rollback)

    add_session_compare(ss)

    ex = ss.add_parser("export", help="write the assistant as a plain Hugging Face model directory",
                       description="Merge every adapter of the active session (or --session K) into the base in "
                       "float32 and save a directory that AutoModelForCausalLM.from_pretrained loads.")
    add_assistant_args(ex)
    what = ex.add_mutually_exclusive_group(required=True)
    what.add_argument("--merged", metavar="DIR", help="a plain HF model directory, every adapter merged (new or empty)")
    what.add_argument("--adapter", metavar="DIR", help="the session chain as one PEFT LoRA adapter on the base (rank: "
                      "the sessions' ranks added up), for vLLM's --enable-lora --lora-modules NAME=DIR")
    what.add_argument("--base", metavar="DIR", help="the assistant's base model as a plain HF directory (what vLLM "
                      "serves the adapters on)")
    ex.add_argument("--session", type=int, metavar="K", help="session to export, with its final adapter [default: the "
                    "active one, at its active epoch]; --base needs none")
    ex.set_defaults(func=cmd_export)


COMPARE_EXAMPLES = """examples:
  forgetlab session compare cs_faq.json housing_faq.json \\
      --heldout cs_faq_paraphrases.json --heldout housing_faq_paraphrases.json
  forgetlab session compare a.json b.json --setting defaults --setting plain:rephrase=0,anchor=0
  forgetlab session compare --config configs/sessions/compare_faq.yaml
  forgetlab session compare --resume runs/20261124-101500-session-compare-cs_faq-housing_faq
"""


def add_session_compare(ss) -> None:

    built_in = "; ".join(f"{k}: {', '.join(f'{a}={b}' for a, b in v.items()) or 'the defaults'}"
                         for k, v in SESSION_SETTINGS.items())
    c = ss.add_parser("compare", help="train the same session files under several settings; one retention table each",
                      description="Train FILE... as sessions 1, 2, ... once per setting, each setting in an assistant "
                      "home of its own (every session a child process, one after another), then print each setting's "
                      "retention table and a summary: recall right after each session, the lowest share of it kept by "
                      f"later sessions, general answers, time. Without --setting: {built_in}.",
                      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=COMPARE_EXAMPLES)
    c.add_argument("files", nargs="*", metavar="FILE", help="session files in training order")
    c.add_argument("--heldout", action="append", default=[], metavar="FILE", help="check questions for each FILE "
                   "(repeat, in the same order), e.g. paraphrases")
    c.add_argument("--setting", action="append", default=[], metavar="NAME[:KEY=V,...]", help="a setting to compare: "
                   "a built-in name, or a new name with the session settings it changes (repeat)")
    c.add_argument("--model", help="base model: 'bundled', a hub id or a local HF directory")
    c.add_argument("--out", metavar="DIR", help="directory the comparison directory is made in "
                   f"[default: {default_of(SessionCompareConfig, 'root')}]")
    c.add_argument("--config", metavar="YAML", help="files, heldout, settings, session, root")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key (repeat)")
    c.add_argument("--resume", metavar="DIR", help="finish an interrupted comparison")
    add_executor_args(c)
    c.set_defaults(func=cmd_session_compare)


def parse_settings(items: list[str]) -> dict:
    """['defaults', 'plain:rephrase=0,anchor=0'] -> {'defaults': {}, 'plain': {'rephrase': 0, 'anchor': 0}}."""
    out = {}
    for item in items:
        name, _, rest = item.partition(":")
        if not rest:
            if name not in SESSION_SETTINGS:
                raise UserError(f"--setting {name}: not a built-in setting ({', '.join(SESSION_SETTINGS)}); a new one "
                                f"names what it changes, e.g. --setting {name}:rephrase=0,anchor=0")
            out[name] = dict(SESSION_SETTINGS[name])
            continue
        out[name] = dict(parse_set(kv) for kv in rest.split(",") if kv.strip())
    return out


def cmd_session_compare(args) -> int:
    from pathlib import Path

    from ..recipes.session_compare import run_session_compare

    console = terminal()
    if args.resume:
        from ..runs import read_json

        path = Path(args.resume) / "config.json"
        if not path.is_file():
            raise UserError(f"{args.resume} is not a session comparison (no config.json); pass the directory "
                            "`forgetlab session compare` printed")
        cfg = SessionCompareConfig.model_validate(read_json(path))
    else:
        base = read_yaml(args.config) if args.config else {}
        if not (args.files or base.get("files")):
            raise UserError("no session files given; pass FILE... (sessions in order) or --config")
        flags = {"files": args.files or None, "heldout": args.heldout or None, "root": args.out,
                 "settings": parse_settings(args.setting) or None, "session.model.name": args.model,
                 **executor_flags(args)}
        cfg = build_config(SessionCompareConfig, base, given(flags), args.set,
                           source=args.config or "session compare")
    out = run_session_compare(cfg, Path(args.resume) if args.resume else None, console)
    console.print(f"comparison: {out}\ntables: {out / 'session_compare.md'}")
    return grid_exit(out, "session_compare.json")


def session_flags(args) -> dict:
    """The settings given as flags (None: not given)."""
    return {"mode": args.mode, "replay": args.replay, "anchor": args.anchor, "holdout": args.holdout, "lora.rank": args.rank,
             "distill": args.distill, "rephrase": args.rephrase,
             "lora.alpha": args.alpha,
             "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
             "max_length": args.max_length, "warmup_steps": args.warmup_steps, "seed": args.seed,
             "model.name": args.model, "gradient_checkpointing": True if args.gradient_checkpointing else None,
             "preset": args.preset}


def session_config(args, store) -> SessionConfig:
    flags = session_flags(args)
    base = read_yaml(args.config) if args.config else {}
    if store.exists():  # a later session keeps the assistant's base model and mode unless a flag says otherwise
        info = store.info()
        base.setdefault("model", {}).setdefault("name", info["model"])
        base.setdefault("mode", info["mode"])
    return build_config(SessionConfig, base, given(flags), args.set,
                        source=args.config or "session settings")


def cmd_train(args) -> int:
    from ..recipes.session import train_session
    from ..sessions.store import Store

    console = terminal()
    store = Store(args.home, args.assistant)
    from ..recipes.session import can_resume

    if args.resume and can_resume(store):  # it carries on exactly as it started; a new setting would be lost silently
        given = [f"--{k.split('.')[-1].replace('_', '-')}" for k, v in session_flags(args).items() if v is not None]
        given += ["--config"] * bool(args.config) + ["--set"] * bool(args.set) + ["--heldout"] * bool(args.heldout)
        if given:
            raise UserError(f"--resume carries on the interrupted session with the settings it started with; drop "
                            f"{', '.join(given)} (or delete {store.partial_dir} and train the session afresh)")
    cfg = session_config(args, store)
    record = train_session(store, cfg, args.data, args.heldout, resume=args.resume, console=console)
    print_list(console, store, only=record["id"])
    for line in record["warnings"]:
        console.print(f"[yellow]warning:[/] {line}")
    console.print(f"session {record['id']} is active ({record['wall_seconds']:.0f} s). A running server switches to it "
                  "on POST /admin/reload.")
    return 0


def print_list(console, store, only: int | None = None) -> None:
    from rich.table import Table

    from ..report import fmt
    from ..sessions.manage import SESSION_HEADER, retention_matrix, session_rows, sessions_table

    if only is None:
        info = store.info()
        console.print(f"assistant '{store.name}' ({store.path}): base {info['model']}, mode {info['mode']}, "
                      f"active session {active_label(info)}")
        table = Table(*SESSION_HEADER, title="Sessions")
        for row in sessions_table(store):
            table.add_row(*row)
        console.print(table)
    chain, rows = retention_matrix(store)
    checks = "; ".join(f"session {k}: {store.session(k)['data']['heldout_from']}" for k in chain)
    table = Table("recall", *[f"session {j}" for j in chain], "general", title="Retention (recall: share of each "
                  "session's check questions whose answer contains the reference; general: share of 28 general "
                  f"questions answered). Check questions: {checks}")
    for row in rows:
        table.add_row(row[0], *[fmt(v) for v in row[1:]])
    console.print(table)
    if only is None:
        for r in session_rows(store):
            if r["state"] != "rolled back":
                for line in r["record"].get("warnings", []):
                    console.print(f"[yellow]warning (after session {r['id']}):[/] {line}")


def cmd_list(args) -> int:
    from ..sessions.store import Store

    store = Store(args.home, args.assistant)
    if store.info()["active"] is None:
        print(f"assistant '{store.name}' has no finished session yet")
        return 0
    print_list(terminal(), store)
    return 0


def cmd_rollback(args) -> int:
    from ..sessions.manage import rollback
    from ..sessions.store import Store

    store = Store(args.home, args.assistant)
    before = active_label(store.info())
    record = rollback(store, args.to, args.epoch)
    print(f"assistant '{store.name}': active session {active_label(store.info())} ({record['data']['name']}), was "
          f"{before}. A running server switches on POST /admin/reload; the next session trains on top of this one.")
    return 0


def max_rank(adapter: str) -> int:
    """The smallest of vLLM's --max-lora-rank values that holds this adapter's rank."""
    import json
    from pathlib import Path

    rank = json.loads((Path(adapter) / "adapter_config.json").read_text())["r"]
    return next((v for v in (1, 8, 16, 32, 64, 128, 256, 320, 512) if v >= rank), rank)


def active_label(info: dict) -> str:
    """'2', or '2 (epoch 3)' where a kept epoch is active."""
    epoch = info.get("active_epoch")
    return f"{info['active']}" + (f" (epoch {epoch})" if epoch is not None else "")


def cmd_export(args) -> int:
    from ..sessions.manage import export
    from ..sessions.store import Store

    kind = "adapter" if args.adapter else "base" if args.base else "merged"
    out = export(Store(args.home, args.assistant), args.adapter or args.base or args.merged, args.session, kind=kind)
    print(f"exported to {out}: " + (f"a PEFT adapter; serve it with vllm serve BASE --enable-lora --max-lora-rank "
                                    f"{max_rank(out)} --lora-modules {args.assistant}={out}" if kind == "adapter" else
                                    f"load it with AutoModelForCausalLM.from_pretrained('{out}')"))
    return 0
