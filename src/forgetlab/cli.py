"""The `forgetlab` command: one table of subcommands, each thin over a recipe.

Errors a user can cause end in one line naming the problem and the fix, with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import LORA_PRESETS, CompareConfig, ExecutorConfig, SequentialConfig, build_config, describe_fields, read_yaml
from .errors import Interrupted, UserError


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (exit 2) instead of usage text plus the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def config_epilog(cls) -> str:
    lines = ["config keys (YAML sections, or --set key=value):"]
    for key, default, desc in describe_fields(cls):
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        lines.append(f"  {key:<24} {desc} [default: {shown}]")
    return "\n".join(lines)


SEQUENTIAL_EXAMPLES = """examples:
  forgetlab sequential --task facts:people --task facts:elements --preset seft --epochs 5
  forgetlab sequential --task mmlu:abstract_algebra --task mmlu:world_religions --mmlu-dir ~/data/mmlu
  forgetlab sequential --config configs/sequential/seft.yaml --set train.lr=5e-4
  forgetlab sequential --resume runs/20261122-101500-sequential-people-elements
"""


def add_study_args(p) -> None:
    """Flags shared by `sequential` and `compare`."""
    p.add_argument("--task", action="append", metavar="SPEC",
                   help="a task, in training order (repeat): facts:<people|elements|festivals>, mmlu:<subject>, "
                   "file:<path.json|.jsonl>")
    p.add_argument("--config", metavar="YAML", help="a config file (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeat)")
    p.add_argument("--preset", choices=sorted(LORA_PRESETS), help="LoRA preset: seft (r64, all 7 projections) or "
                   "light (r16, attention only)")
    p.add_argument("--epochs", type=int, help="epochs per task")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--batch-size", type=int, help="examples per forward pass")
    p.add_argument("--model", help="'bundled', a hub id or a local HF directory")
    p.add_argument("--mmlu-dir", metavar="DIR", help="local MMLU directory ({dev,val,test}/<subject>_<split>.csv)")
    p.add_argument("--name", help="run name")
    p.add_argument("--out", metavar="DIR", help="where run directories go [default: runs]")


def add_sequential(sub) -> None:
    p = sub.add_parser("sequential", help="train on tasks one after another; measure forgetting and why",
                       description="Fine-tune with LoRA on each task in turn. After each task every task is evaluated "
                       "(accuracy matrix, BWT, forgetting), the checkpoint's top Hessian eigenvalues are computed, and "
                       "the measured loss increase of earlier tasks is set beside the second-order estimate.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=SEQUENTIAL_EXAMPLES + "\n" + config_epilog(SequentialConfig))
    add_study_args(p)
    p.add_argument("--strategy", "--method", dest="method", metavar="NAME",
                   help="continual-learning strategy (see `forgetlab methods`) [default: naive]")
    p.add_argument("--seed", type=int, help="training seed")
    p.add_argument("--no-landscape", action="store_true", help="skip Hessian eigenvalues and forgetting estimates")
    p.add_argument("--resume", metavar="RUN_DIR", help="carry on an interrupted run from its finished tasks")
    p.set_defaults(func=cmd_sequential)


def study_flags(args) -> dict:
    return {"tasks": tuple(args.task) if args.task else None, "lora.preset": args.preset,
            "train.epochs": args.epochs, "train.lr": args.lr, "train.batch_size": args.batch_size,
            "model.name": args.model, "data.mmlu.dir": args.mmlu_dir, "run.name": args.name, "run.root": args.out}


def load_config(cls, args, flags: dict):
    base = read_yaml(args.config) if args.config else {}
    return build_config(cls, base, {k: v for k, v in flags.items() if v is not None}, args.set,
                        source=args.config or "config")


def sequential_config(args) -> SequentialConfig:
    flags = dict(study_flags(args), **{"train.method": args.method, "train.seed": args.seed,
                                       "landscape.enabled": False if args.no_landscape else None})
    return load_config(SequentialConfig, args, flags)


def resume_config(cls, path: str):
    run_dir = Path(path)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"--resume {run_dir}: not a run directory (no config.yaml); pass a directory under runs/")
    return run_dir, build_config(cls, read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))


def terminal():
    """A rich console; when output is not a terminal (logs, CI), wide enough that tables are not cut."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def cmd_sequential(args) -> int:
    from .recipes.sequential import run_sequential

    console = terminal()
    if args.resume:
        run_dir, cfg = resume_config(SequentialConfig, args.resume)
    else:
        cfg = sequential_config(args)
    run_dir = run_sequential(cfg, resume=run_dir if args.resume else None, console=console)
    console.print(f"run directory: {run_dir}\nreport: {run_dir / 'report.html'}")
    return 0


COMPARE_EXAMPLES = """examples:
  forgetlab compare --task facts:people --task facts:elements --task facts:festivals \\
      --strategies naive,replay,kl,kl-base,ewc,olora,merge,gated,joint --seeds 0,1
  forgetlab compare --config configs/compare/three_facts.yaml
  forgetlab compare --config configs/compare/three_facts.yaml --strategies naive,ewc:lam=1e5,ewc:lam=1e6 --seeds 0
  forgetlab compare --resume runs/20261123-101500-compare-people-elements-festivals
"""


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="run several strategies on the same tasks and seeds; one table, one report",
                       description="Run `forgetlab sequential` once per strategy and seed (each in its own process, "
                       "same tasks and budget), then tabulate mean ± std over seeds: final average accuracy, BWT, "
                       "largest forgetting, plasticity, base retention, train time, peak memory, trainable parameters. "
                       "A strategy that fails is reported with its error; the others still run. The Hessian "
                       "landscape is off by default here (--set landscape.enabled=true turns it on).",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=COMPARE_EXAMPLES + "\n" + config_epilog(CompareConfig))
    add_study_args(p)
    p.add_argument("--strategies", metavar="A,B,...", help="comma-separated strategies (see `forgetlab methods`); "
                   "one with settings of its own is name:key=value[:key=value], e.g. ewc:lam=1e6 (strategy.ewc.lam)")
    p.add_argument("--seeds", metavar="0,1,...", help="comma-separated training seeds")
    p.add_argument("--resume", metavar="DIR", help="finish an interrupted comparison (finished runs are reused)")
    add_executor_args(p)
    p.set_defaults(func=cmd_compare)


def add_executor_args(p) -> None:
    """Where a grid's points run (`compare`, `sweep`): Ray, locally or on a cluster."""
    p.add_argument("--address", help="Ray cluster to join: auto, or ray://host:10001 [default: a local instance]")
    p.add_argument("--cpus-per-run", type=float, metavar="N", help="cores per run [default: every core here, so runs "
                   "go one at a time]")
    p.add_argument("--gpus-per-run", type=float, metavar="N", help="GPUs per run [default: 0]")


def executor_flags(args) -> dict:
    return {"executor.address": args.address, "executor.cpus_per_run": args.cpus_per_run,
            "executor.gpus_per_run": args.gpus_per_run}


def comma_list(text: str | None, kind=str, flag: str = "", example: str = "0,1") -> tuple | None:
    if text is None:
        return None
    try:
        return tuple(kind(x.strip()) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"{flag} {text}: expected a comma-separated list of numbers, e.g. {flag} {example}") from None


def cmd_compare(args) -> int:
    from .recipes.compare import run_compare

    console = terminal()
    if args.resume:
        out, cfg = resume_config(CompareConfig, args.resume)
        given = {k.split(".", 1)[1]: v for k, v in executor_flags(args).items() if v is not None}
        if given:  # the same comparison, finished somewhere else (e.g. on a cluster)
            cfg = cfg.model_copy(update={"executor": build_config(ExecutorConfig, cfg.executor.model_dump(), given,
                                                                  source="executor")})
    else:
        flags = dict(study_flags(args), strategies=comma_list(args.strategies, str, "--strategies"),
                     seeds=comma_list(args.seeds, int, "--seeds"), **executor_flags(args))
        cfg, out = load_config(CompareConfig, args, flags), None
    out = run_compare(cfg, resume=out, console=console)
    console.print(f"comparison: {out}\ntable: {out / 'comparison.md'}\nreport: {out / 'report.html'}")
    return 0


def add_methods(sub) -> None:
    p = sub.add_parser("methods", help="list the continual-learning strategies and the unlearning methods",
                       description="The strategies `--strategy` (sequential) and `--strategies` (compare) accept "
                       "(their settings are the strategy.* config keys), and the methods `unlearn --method` accepts "
                       "(settings: method.*).")
    p.set_defaults(func=cmd_methods)


def cmd_methods(args) -> int:
    from .methods import describe
    from .unlearning import describe as describe_unlearning

    print("continual-learning strategies (sequential --strategy, compare --strategies):")
    for name, doc in describe():
        print(f"  {name:<8} {doc}")
    print("unlearning methods (unlearn --method):")
    for name, doc in describe_unlearning():
        print(f"  {name:<8} {doc}")
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
    add_compare(sub)
    add_methods(sub)
    add_runs(sub)
    from .cli_online import add_chat, add_online_eval
    from .cli_session import add_serve, add_session
    from .cli_unlearn import add_rtt, add_sweep, add_unlearn

    add_session(sub)
    add_chat(sub)
    add_serve(sub)
    add_online_eval(sub)
    add_unlearn(sub)
    add_rtt(sub)
    add_sweep(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"forgetlab: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"forgetlab: interrupted; finished work is saved. Carry on with: {e.resume_command}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("forgetlab: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the file system said no (a path through a file, no permission, a full disk)
        if e.filename is None:
            raise
        print(f"forgetlab: error: {e.filename}: {e.strerror}; check the path, its permissions and the free space "
              "(an interrupted run carries on with --resume)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
