"""The `forgetlab` command: one table of subcommands, each thin over a recipe.

Errors a user can cause end in one line naming the problem and the fix, with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import LORA_PRESETS, SequentialConfig, build_config, describe_fields, read_yaml
from .errors import Interrupted, UserError


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (exit 2) instead of usage text plus the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def config_epilog(cls) -> str:
    lines = ["config keys (YAML sections, or --set key=value):"]
    for key, default, desc in describe_fields(cls):
        shown = ",".join(default) if isinstance(default, tuple) else default
        lines.append(f"  {key:<24} {desc} [default: {shown}]")
    return "\n".join(lines)


SEQUENTIAL_EXAMPLES = """examples:
  forgetlab sequential --task facts:people --task facts:elements --preset seft --epochs 5
  forgetlab sequential --task mmlu:abstract_algebra --task mmlu:world_religions --mmlu-dir ~/data/mmlu
  forgetlab sequential --config configs/sequential/seft.yaml --set train.lr=5e-4
  forgetlab sequential --resume runs/20261122-101500-sequential-people-elements
"""


def add_sequential(sub) -> None:
    p = sub.add_parser("sequential", help="train on tasks one after another; measure forgetting and why",
                       description="Fine-tune with LoRA on each task in turn. After each task every task is evaluated "
                       "(accuracy matrix, BWT, forgetting), the checkpoint's top Hessian eigenvalues are computed, and "
                       "the measured loss increase of earlier tasks is set beside the second-order estimate.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=SEQUENTIAL_EXAMPLES + "\n" + config_epilog(SequentialConfig))
    p.add_argument("--task", action="append", metavar="SPEC",
                   help="a task, in training order (repeat): facts:<people|elements|festivals>, mmlu:<subject>, "
                   "file:<path.json|.jsonl>")
    p.add_argument("--config", metavar="YAML", help="a config file (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeat)")
    p.add_argument("--preset", choices=sorted(LORA_PRESETS), help="LoRA preset: seft (r64, all 7 projections) or "
                   "light (r16, attention only)")
    p.add_argument("--strategy", "--method", dest="method", metavar="NAME", help="continual-learning strategy")
    p.add_argument("--epochs", type=int, help="epochs per task")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--batch-size", type=int, help="examples per forward pass")
    p.add_argument("--seed", type=int, help="training seed")
    p.add_argument("--model", help="'bundled', a hub id or a local HF directory")
    p.add_argument("--mmlu-dir", metavar="DIR", help="local MMLU directory ({dev,val,test}/<subject>_<split>.csv)")
    p.add_argument("--name", help="run name")
    p.add_argument("--out", metavar="DIR", help="where run directories go [default: runs]")
    p.add_argument("--no-landscape", action="store_true", help="skip Hessian eigenvalues and forgetting estimates")
    p.add_argument("--resume", metavar="RUN_DIR", help="carry on an interrupted run from its finished tasks")
    p.set_defaults(func=cmd_sequential)


def sequential_config(args) -> SequentialConfig:
    flags = {"tasks": tuple(args.task) if args.task else None, "lora.preset": args.preset,
             "train.method": args.method, "train.epochs": args.epochs, "train.lr": args.lr,
             "train.batch_size": args.batch_size, "train.seed": args.seed, "model.name": args.model,
             "data.mmlu.dir": args.mmlu_dir, "run.name": args.name, "run.root": args.out,
             "landscape.enabled": False if args.no_landscape else None}
    base = read_yaml(args.config) if args.config else {}
    return build_config(SequentialConfig, base, {k: v for k, v in flags.items() if v is not None}, args.set,
                        source=args.config or "config")


def terminal():
    """A rich console; when output is not a terminal (logs, CI), wide enough that tables are not cut."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def cmd_sequential(args) -> int:
    from .recipes.sequential import run_sequential

    console = terminal()
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file() or not (run_dir / "metrics.json").is_file():
            raise UserError(f"--resume {run_dir}: not a run directory (no config.yaml / metrics.json); "
                            "pass a directory under runs/")
        cfg = build_config(SequentialConfig, read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
    else:
        cfg = sequential_config(args)
    run_dir = run_sequential(cfg, resume=run_dir if args.resume else None, console=console)
    console.print(f"run directory: {run_dir}\nreport: {run_dir / 'report.html'}")
    return 0


def add_runs(sub) -> None:
    p = sub.add_parser("runs", help="list recorded runs", description="List the runs indexed under a runs directory.")
    p.add_argument("--out", metavar="DIR", default="runs", help="runs directory [default: runs]")
    p.set_defaults(func=cmd_runs)


def cmd_runs(args) -> int:
    from rich.table import Table

    from .report import fmt
    from .runs import list_runs

    rows = list_runs(args.out)
    if not rows:
        print(f"no runs recorded under {args.out}")
        return 0
    table = Table("created", "kind", "status", "avg acc", "BWT", "path")
    for r in rows:
        table.add_row(r["created"], r["kind"], r["status"], fmt(r["summary"].get("average_accuracy")),
                      fmt(r["summary"].get("bwt")), r["path"])
    terminal().print(table)
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="forgetlab", description="Teach a language model with LoRA, make it forget on purpose, "
                    "and measure all of it.")
    parser.add_argument("--version", action="version", version=f"forgetlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    add_sequential(sub)
    add_runs(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"forgetlab: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"forgetlab: interrupted; finished tasks are saved. Carry on with: "
              f"forgetlab sequential --resume {e.run_dir}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
