"""What every command group shares: the one-line-error parser, config loading, help text from the config fields,
the executor, assistant and online-learner flags, and the console."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import ExecutorConfig, build_config, describe_fields, read_yaml
from ..errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (exit 2) instead of usage text plus the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def shown(value: Any) -> str:
    """A default as `--help` prints it (and as `--set` takes it back: lists comma-separated)."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def config_epilog(cls, skip: tuple[str, ...] = ()) -> str:
    """Every config key of `cls` with its description and default, for a command's `--help`."""
    lines = ["config keys (YAML sections, or --set key=value):"]
    for key, default, desc in describe_fields(cls):
        if key not in skip:
            lines.append(f"  {key:<24} {desc} [default: {shown(default)}]")
    return "\n".join(lines)


def default_of(cls, key: str) -> str:
    """The default of dotted `key` in `cls`, for a flag's help: no default is copied into a help string."""
    for k, default, _ in describe_fields(cls):
        if k == key:
            return shown(default)
    raise KeyError(key)


def given(flags: dict) -> dict:
    """The flags the user gave (None: not given)."""
    return {k: v for k, v in flags.items() if v is not None}


def load_config(cls, args, flags: dict):
    """`--config` YAML, then the flags given (each writes one key), then `--set` items, validated into `cls`."""
    base = read_yaml(args.config) if args.config else {}
    return build_config(cls, base, given(flags), args.set, source=args.config or "config")


def resume_config(cls, path: str, command: str):
    """(run directory, its config) for `--resume`; a directory another command made says which command resumes it."""
    run_dir = Path(path)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"--resume {run_dir}: not a run directory (no config.yaml); pass a directory under runs/")
    from ..runs import run_kind

    kind = run_kind(run_dir)
    if kind is not None and kind != command:
        raise UserError(f"--resume {run_dir}: a `{kind}` run; carry it on with `forgetlab {kind} --resume {run_dir}`")
    return run_dir, build_config(cls, read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))


def grid_exit(out: Path, results_file: str) -> int:
    """A grid's exit code: 0 when every point finished, 1 when some or all failed (said on stderr)."""
    import sys

    from ..runs import read_json

    status = read_json(out / results_file)["status"]
    if status == "complete":
        return 0
    print(f"forgetlab: {'every' if status == 'failed' else 'some'} point failed (status {status}); the errors are "
          f"above and the logs in {out / 'logs'}", file=sys.stderr)
    return 1


def terminal():
    """A rich console; when output is not a terminal (logs, CI), wide enough that tables are not cut."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def comma_list(text: str | None, kind=str, flag: str = "", example: str = "0,1") -> tuple | None:
    if text is None:
        return None
    try:
        return tuple(kind(x.strip()) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"{flag} {text}: expected a comma-separated list of numbers, e.g. {flag} {example}") from None


def add_executor_args(p) -> None:
    """Where a grid's points run (`compare`, `sweep`, `session compare`): Ray, locally or on a cluster."""
    p.add_argument("--address", help="Ray cluster to join: auto, or ray://host:10001 [default: a local instance]")
    p.add_argument("--cpus-per-run", type=float, metavar="N", help="cores per run [default: every core here, so runs "
                   "go one at a time]")
    p.add_argument("--gpus-per-run", type=float, metavar="N", help="GPUs per run "
                   f"[default: {default_of(ExecutorConfig, 'gpus_per_run')}]")


def executor_flags(args) -> dict:
    return {"executor.address": args.address, "executor.cpus_per_run": args.cpus_per_run,
            "executor.gpus_per_run": args.gpus_per_run}


def add_assistant_args(p, without: str | None = None, repeat: bool = False) -> None:
    """--assistant and --home; `without`, when given, makes --assistant optional and says what runs without it;
    `repeat`: --assistant may be given several times (a list)."""
    p.add_argument("--assistant", required=without is None, metavar="NAME", action="append" if repeat else "store",
                   help="the assistant's name (its directory under --home)" + ("; repeat it to serve several, the "
                   "request's model picking one" if repeat else "") + (f" [default: none: {without}]" if without else ""))
    p.add_argument("--home", metavar="DIR", help="where assistants live [default: $FORGETLAB_HOME, else the user data "
                   "directory, e.g. ~/.local/share/forgetlab/assistants]")


def add_online_args(p) -> None:
    """The online learner's settings (chat, serve, online-eval)."""
    from ..config import PRESETS

    p.add_argument("--config", metavar="YAML", help="online learner settings (the keys of `online:` in the YAML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a learner setting, e.g. update.lr=1e-3 (repeat)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="minimal (also: seed): one small step per turn (r4 on "
                   "q/v, lr 1e-6 × 5 for facts, the statement only), for comparison; editor (online-eval --edits uses "
                   "it unless another is named): the adapter on the top half of the layers, 3 of the 8 rehearsed "
                   "facts the most recently stored")
    from ..config import OnlineConfig

    p.epilog = (p.epilog or "") + "\n\nonline learner " + config_epilog(OnlineConfig)


def online_config(args, flags: dict | None = None):
    """The online learner's config: `--preset`, `--config` (its `online:` section), the flags given, `--set`."""
    from ..config import PRESETS, OnlineConfig

    base = read_yaml(args.config) if args.config else {}
    base = base.get("online", base)
    if args.preset:
        base = {**PRESETS[args.preset], **base}
    return build_config(OnlineConfig, base, given(flags or {}), args.set, source=args.config or "online settings")
