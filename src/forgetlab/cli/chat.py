"""`forgetlab chat [--learn]`, `forgetlab serve` and `forgetlab online-eval`: thin over sessions/, online/ and recipes/."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile

from ..config import OnlineConfig, RunConfig
from ..errors import UserError
from .common import add_assistant_args, add_online_args, default_of, online_config, terminal

CHAT_EXAMPLES = """examples:
  forgetlab chat --assistant msu                     # chat with the active session
  forgetlab chat --learn                             # the bundled model, learning from what you tell it
  forgetlab chat --learn --assistant msu             # learns on top of msu's active session; kept across restarts
  printf 'My manager is Priya Velloso.\\n/reset\\nWho do I report to?\\n' | forgetlab chat --learn

commands in the chat: /facts  /forget ID  /metrics  /reset (the conversation; '/reset learned' also forgets what
was learned)  /quit. With standard input not a terminal, each line is one turn, each answer one line, and each turn
waits until the previous one has been learned (a script sees what a person typing would).
"""


def add_chat(sub) -> None:
    p = sub.add_parser("chat", help="chat with an assistant in the terminal; with --learn it learns from what you say",
                       description="A terminal chat with the assistant's active session (or the bundled model). The "
                       "conversation is kept as history. With --learn, every turn is learned from after it is "
                       "answered: facts you state are trained into a LoRA adapter, kept near the starting model.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=CHAT_EXAMPLES)
    add_assistant_args(p, without="the bundled model")
    p.add_argument("--session", type=int, metavar="K", help="chat with session K [default: the active one]")
    p.add_argument("--max-tokens", type=int, default=256, help="answer length limit [default: 256]")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy, at most 2 [default: 0]")
    p.add_argument("--learn", action="store_true", help="learn from every turn (state kept in the assistant's "
                   "directory; without --assistant a fresh state that ends with the chat)")
    add_online_args(p)
    p.set_defaults(func=cmd_chat)


def cmd_chat(args) -> int:
    from ..sessions.holder import RequestError

    if not 0 <= args.temperature <= 2:
        raise UserError(f"--temperature {args.temperature}: must be in [0, 2]")
    if args.max_tokens < 1:
        raise UserError(f"--max-tokens {args.max_tokens}: must be at least 1")
    cfg = online_config(args)
    store, holder = open_for(args, cfg)
    name = store.name if store else "bundled"
    with contextlib.ExitStack() as stack:
        learner = start_learner(stack, holder, cfg, store) if args.learn else None
        scripted = not sys.stdin.isatty()
        k = holder.current.session
        print(f"chatting with '{name}'" + (f" session {k}" if k is not None else " (no session: the base model)")
              + ("; learning from every turn" if learner else "") + "; /reset clears the history, /quit leaves")
        history: list[dict] = []
        while True:
            try:
                line = input("" if scripted else "you> ").strip()
            except (EOFError, KeyboardInterrupt):
                print()
                break
            if line in ("/quit", "/exit"):
                break
            if line.startswith("/"):
                history = command(line, learner, history)
                continue
            if not line:
                continue
            if learner and scripted:
                learner.wait()
            history.append({"role": "user", "content": line})
            try:
                done = holder.complete(history, max_tokens=args.max_tokens, temperature=args.temperature)
            except RequestError as e:
                history.pop()
                print(f"(not answered: {e}; /reset clears the history)", flush=True)
                continue
            print(f"{name}> {' '.join(done.text.split())}", flush=True)
            history.append({"role": "assistant", "content": done.text})
            if learner:
                learner.submit(line, done.text)
        if learner:
            learner.wait()
    return 0


def open_for(args, cfg, name: str | None = None):
    """(store or None, holder) for chat and serve, from their flags (`name`: one of serve's assistants): the model
    placed as `cfg.model` says."""
    from ..sessions.manage import open_assistant

    return open_assistant(args.home, name if name is not None else args.assistant, cfg.model,
                          session=getattr(args, "session", None), learning=args.learn)


def start_learner(stack, holder, cfg, store):
    from ..online.learner import OnlineLearner

    if store is None:
        state = stack.enter_context(tempfile.TemporaryDirectory(prefix="forgetlab-online-"))
        parent = None
    else:
        state, parent = store.path / "online", holder.current.session
    return OnlineLearner(holder, cfg, state, parent=parent, on_prepare=lambda: print(
        "preparing the learner (the starting model's answers to the anchor and control prompts)...", file=sys.stderr))


def command(line: str, learner, history: list[dict]) -> list[dict]:
    """Run a chat command; return the (possibly cleared) history."""
    word, _, rest = line.partition(" ")
    if word == "/reset":
        if rest.strip() == "learned" and learner:
            learner.reset()
            print("(history cleared; everything learned forgotten)")
        else:
            print("(history cleared)" + ("; '/reset learned' also forgets what was learned" if learner else ""))
        return []
    if learner is None:
        print(f"({word} needs --learn; commands: /reset, /quit)")
        return history
    if word == "/facts":
        learner.wait()
        for f in learner.memory.all():
            print(f"  [{f['id']}] {f['statement']}  ({f['relation']}, seen {f['times_seen']}×, "
                  f"{'learned' if f['learned'] else 'not yet learned'})")
        if not learner.memory.all():
            print("  (no facts yet)")
    elif word == "/forget":
        ok = rest.strip().isdigit() and learner.forget(int(rest))
        print(f"(fact {rest.strip()} removed from the memory)" if ok else f"(no fact '{rest.strip()}'; /facts lists them)")
    elif word == "/metrics":
        learner.wait()
        m = learner.holder.update(lambda _: learner.measure(learner.state.turn))
        print("  " + "  ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items()))
    else:
        print(f"(unknown command {word}; commands: /facts, /forget ID, /metrics, /reset, /quit)")
    return history


def add_online_eval(sub) -> None:
    p = sub.add_parser("online-eval", help="the automated fact-learning test of the online learner",
                       description="Streams fact statements (each --repeats times, chit-chat in between) through the "
                       "online learner, then scores every fact at the end of the stream: reliability (the trained "
                       "question forms), generalisation (paraphrased probes, never trained), inverse probes, locality "
                       "(agreement with the starting model's answers: the share of their tokens still predicted, and "
                       "whole answers unchanged), turns to learn, stability.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="facts file (JSON list or JSONL), one object per fact:\n"
                       '  {"statement": "My sister\'s name is Oriel.", "probes": [{"question": "What do people call '
                       'my sister?", "keys": ["Oriel"]}], "inverse": [{"question": "Who is Oriel?", "keys": '
                       '["sister"]}]}\n\nexamples:\n  forgetlab online-eval\n  forgetlab online-eval --preset minimal\n'
                       "  forgetlab online-eval --facts my_facts.jsonl --repeats 3 --set update.steps=12\n"
                       "  forgetlab online-eval --edits zsre_dev.json --baselines   # reliability, generalisation, "
                       "locality over T edits")
    p.add_argument("--facts", metavar="FILE", help="facts with probes [default: 16 built-in invented facts]")
    p.add_argument("--edits", metavar="FILE", help="knowledge edits instead of stated facts: zsRE records (subject, "
                   "src, alt, rephrase, loc, loc_ans) or CounterFact records (requested_rewrite, paraphrase_prompts, "
                   "neighborhood_prompts), applied one after another and scored as EasyEdit scores editors")
    p.add_argument("--baselines", action="store_true", help="with --edits: also plain fine-tuning of the same "
                   "adapter on each edit, and retrieval (the stored edits in the prompt, no weight change)")
    p.add_argument("--limit", type=int, metavar="N", help="with --edits: the first N records only")
    p.add_argument("--repeats", type=int, default=2, help="times each statement is streamed [default: 2]")
    p.add_argument("--locality", metavar="FILE", help="a text file of prompts, one per line, whose answers should "
                   "not change [default: the built-in general questions the model answers right]")
    p.add_argument("--model", help="'bundled', a hub id or a local HF directory")
    root = RunConfig().root
    p.add_argument("--out", metavar="DIR", default=root, help=f"where run directories go [default: {root}]")
    p.add_argument("--name", default="online-eval", help="run name")
    add_online_args(p)
    p.set_defaults(func=cmd_online_eval)


def cmd_online_eval(args) -> int:
    from pathlib import Path

    from ..online.probes import BUILTIN_FACTS, load_facts
    from ..recipes.online_eval import online_eval

    if args.repeats < 1:
        raise UserError(f"--repeats {args.repeats}: must be at least 1")
    if args.edits and (args.facts or args.locality):
        raise UserError("--edits brings its own prompts and locality checks; drop --facts / --locality")
    if (args.baselines or args.limit is not None) and not args.edits:
        raise UserError("--baselines and --limit go with --edits FILE")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: must be at least 1")
    if args.edits and not args.preset:
        args.preset = "editor"
    cfg = online_config(args, {"model.name": args.model})
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a directory")
    if args.edits:
        from ..online.edits import read_edits
        from ..recipes.online_edits import online_edits

        records = read_edits(args.edits)[:args.limit]
        online_edits(cfg, records, out, args.name if args.name != "online-eval" else "online-edits",
                     args.baselines, console=terminal())
        return 0
    facts = load_facts(args.facts) if args.facts else list(BUILTIN_FACTS)
    locality = None
    if args.locality:
        path = Path(args.locality)
        if not path.is_file():
            raise UserError(f"locality file {path} not found; pass a text file with one prompt per line")
        try:
            locality = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise UserError(f"{path} is not UTF-8 text; save it as UTF-8") from None
        if not locality:
            raise UserError(f"{path} holds no prompts; write one prompt per line")
    online_eval(cfg, facts, args.repeats, locality, out, args.name, console=terminal())
    return 0


def add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve an assistant over an OpenAI-compatible HTTP API",
                       description="FastAPI + uvicorn: GET /v1/models, POST /v1/chat/completions (streaming or not), "
                       "GET /health, POST /admin/reload (switch to the active session after `session train` or "
                       "`rollback`). Concurrent requests are decoded together in one batch (--max-batch); the model name is the "
                       "assistant's. "
                       "With --learn every turn is learned from after it is answered (\"learn\": false in a request "
                       "skips it): GET /v1/learning, POST /v1/learning/wait, GET /v1/memory, DELETE /v1/memory/ID. "
                       "A web console at / (chat, memory, learning and drift plots, sessions, runs); the OpenAPI "
                       "schema at /docs.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  forgetlab serve --assistant msu --port 8000\n  curl localhost:8000/v1/models\n"
                       "  forgetlab serve --learn            # the bundled model, learning from every turn")
    add_assistant_args(p, without="the bundled model, served as 'bundled'", repeat=True)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on [default: 127.0.0.1]")
    p.add_argument("--port", type=int, default=8000, help="[default: 8000]")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="where the model runs (writes "
                   f"model.device) [default: {default_of(OnlineConfig, 'model.device')}]")
    p.add_argument("--learn", action="store_true", help="learn from every turn (state in the assistant's directory; "
                   "without --assistant a fresh state that ends with the server)")
    p.add_argument("--max-batch", type=int, default=32, metavar="N", help="decode up to N concurrent requests together, "
                   "each joining the running batch at its next token (1: one request at a time) [default: 32]")
    p.add_argument("--layout", choices=["shared", "merged"], default="shared", help="several --assistant: each "
                   "assistant's sessions as one adapter on one shared copy of the base model (shared), or each merged "
                   "into its own copy of the model (merged: one model's memory per assistant) [default: shared]")
    p.add_argument("--runs", metavar="DIR", default="runs", help="the runs directory the console's run browser lists "
                   "[default: runs]")
    add_online_args(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    import contextlib

    from ..serve import check_listen, run

    check_listen(args.host, args.port)
    cfg = online_config(args, {"model.device": args.device})
    names = args.assistant or [None]
    if len(names) != len(set(names)):
        raise UserError("--assistant names an assistant twice; give each once")
    if len(names) > 1 and args.learn:
        raise UserError("--learn learns for one assistant; serve the others from another `forgetlab serve`")
    if args.max_batch < 1:
        raise UserError(f"--max-batch {args.max_batch}: must be at least 1 (1: one request at a time)")
    if len(names) > 1 and args.layout == "shared":
        from ..sessions.manage import open_shared

        stores, holders = open_shared(args.home, names, cfg.model, args.max_batch, getattr(args, "session", None))
    else:
        stores, holders = zip(*(open_for(args, cfg, name) for name in names), strict=True)
        for h in holders:
            h.batch(args.max_batch)
    with contextlib.ExitStack() as stack:
        learner = start_learner(stack, holders[0], cfg, stores[0]) if args.learn else None
        print("serving " + ", ".join(f"'{h.current.assistant}' session {h.current.session}" for h in holders)
              + f" on http://{args.host}:{args.port}/v1" + (", learning from every turn" if learner else "")
              + f"; the console: http://{args.host}:{args.port}/", file=sys.stderr)
        run(list(holders) if len(holders) > 1 else holders[0], args.host, args.port, learner=learner,
            stores={h.current.assistant: s for h, s in zip(holders, stores, strict=True)}, runs=args.runs)
    return 0
