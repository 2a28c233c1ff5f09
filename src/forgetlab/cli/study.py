"""The forgetting study's commands: `forgetlab sequential`, `compare`, `methods` and `runs`."""

from __future__ import annotations

import argparse

from ..config import LORA_PRESETS, CompareConfig, ExecutorConfig, RunConfig, SequentialConfig, build_config
from .common import (
    add_executor_args,
    comma_list,
    config_epilog,
    default_of,
    executor_flags,
    grid_exit,
    load_config,
    resume_config,
    terminal,
)

SEQUENTIAL_EXAMPLES = """examples:
  forgetlab sequential --task facts:people --task facts:elements --preset seft --epochs 5
  forgetlab sequential --task mmlu:abstract_algebra --task mmlu:world_religions --mmlu-dir ~/data/mmlu
  forgetlab sequential --config configs/sequential/seft.yaml --set train.lr=5e-4
  forgetlab sequential --resume runs/20261122-101500-sequential-people-elements
"""


def add_study_args(p, cls) -> None:
    """Flags shared by `sequential` and `compare` (defaults shown from `cls`)."""
    p.add_argument("--task", action="append", metavar="SPEC",
                   help="a task, in training order (repeat): facts:<people|elements|festivals>, mmlu:<subject>, "
                   "file:<path.json|.jsonl>")
    p.add_argument("--config", metavar="YAML", help="a config file (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeat)")
    p.add_argument("--preset", choices=sorted(LORA_PRESETS), help="LoRA preset: seft (r64, all 7 projections) or "
                   "light (r16, attention only)")
    p.add_argument("--epochs", type=int, help=f"epochs per task [default: {default_of(cls, 'train.epochs')}]")
    p.add_argument("--lr", type=float, help=f"peak learning rate [default: {default_of(cls, 'train.lr')}]")
    p.add_argument("--batch-size", type=int, help=f"examples per forward pass [default: "
                   f"{default_of(cls, 'train.batch_size')}]")
    p.add_argument("--model", help=f"'bundled', a hub id or a local HF directory [default: {default_of(cls, 'model.name')}]")
    p.add_argument("--mmlu-dir", metavar="DIR", help="local MMLU directory ({dev,val,test}/<subject>_<split>.csv)")
    p.add_argument("--name", help="run name")
    p.add_argument("--out", metavar="DIR", help=f"where run directories go [default: {default_of(cls, 'run.root')}]")
    p.add_argument("--log", choices=["tensorboard", "wandb", "mlflow"], help="also log the run (steps, each stage's "
                   "evaluation, the final tables) to TensorBoard, Weights & Biases (offline) or MLflow, in its run "
                   "directory (extras: pip install -e '.[tensorboard]', '.[wandb]', '.[mlflow]')")


def add_sequential(sub) -> None:
    p = sub.add_parser("sequential", help="train on tasks one after another; measure forgetting and why",
                       description="Fine-tune with LoRA on each task in turn. After each task every task is evaluated "
                       "(accuracy matrix, BWT, forgetting), the checkpoint's top Hessian eigenvalues are computed, and "
                       "the measured loss increase of earlier tasks is set beside the second-order estimate.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=SEQUENTIAL_EXAMPLES + "\n" + config_epilog(SequentialConfig))
    add_study_args(p, SequentialConfig)
    p.add_argument("--strategy", "--method", dest="strategy", metavar="NAME", help="continual-learning strategy (see "
                   f"`forgetlab methods`) [default: {default_of(SequentialConfig, 'strategy.name')}]")
    p.add_argument("--seed", type=int, help=f"training seed [default: {default_of(SequentialConfig, 'train.seed')}]")
    p.add_argument("--no-landscape", action="store_true", help="skip Hessian eigenvalues and forgetting estimates")
    p.add_argument("--resume", metavar="RUN_DIR", help="carry on an interrupted run from its finished tasks")
    p.set_defaults(func=cmd_sequential)


def study_flags(args) -> dict:
    return {"tasks": tuple(args.task) if args.task else None, "lora.preset": args.preset,
            "train.epochs": args.epochs, "train.lr": args.lr, "train.batch_size": args.batch_size,
            "model.name": args.model, "data.mmlu.dir": args.mmlu_dir, "run.name": args.name, "run.root": args.out,
            "run.log": args.log}


def sequential_config(args) -> SequentialConfig:
    flags = dict(study_flags(args), **{"strategy.name": args.strategy, "train.seed": args.seed,
                                       "landscape.enabled": False if args.no_landscape else None})
    return load_config(SequentialConfig, args, flags)


def cmd_sequential(args) -> int:
    from ..recipes.sequential import run_sequential

    console = terminal()
    if args.resume:
        run_dir, cfg = resume_config(SequentialConfig, args.resume, "sequential")
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
                       "largest forgetting, plasticity, general and task-1 retention, train time, peak memory, "
                       "trainable parameters. "
                       "A strategy that fails is reported with its error; the others still run. The Hessian "
                       "landscape is off by default here (--set landscape.enabled=true turns it on).",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=COMPARE_EXAMPLES + "\n" + config_epilog(CompareConfig))
    add_study_args(p, CompareConfig)
    p.add_argument("--strategies", metavar="A,B,...", help="comma-separated strategies (see `forgetlab methods`); "
                   "one with settings of its own is name:key=value[:key=value], e.g. ewc:lam=1e6 (strategy.ewc.lam) "
                   f"[default: {default_of(CompareConfig, 'strategies')}]")
    p.add_argument("--seeds", metavar="0,1,...", help="comma-separated training seeds "
                   f"[default: {default_of(CompareConfig, 'seeds')}]")
    p.add_argument("--resume", metavar="DIR", help="finish an interrupted comparison (finished runs are reused)")
    add_executor_args(p)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from ..recipes.compare import run_compare

    console = terminal()
    if args.resume:
        out, cfg = resume_config(CompareConfig, args.resume, "compare")
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
    return grid_exit(out, "compare.json")


def add_methods(sub) -> None:
    p = sub.add_parser("methods", help="list the continual-learning strategies and the unlearning methods",
                       description="The strategies `--strategy` (sequential) and `--strategies` (compare) accept "
                       "(their settings are the strategy.* config keys), and the methods `unlearn --method` accepts "
                       "(settings: method.*).")
    p.set_defaults(func=cmd_methods)


def cmd_methods(args) -> int:
    from ..methods import describe
    from ..unlearning import describe as describe_unlearning

    print("continual-learning strategies (sequential --strategy, compare --strategies):")
    for name, doc in describe():
        print(f"  {name:<8} {doc}")
    print("unlearning methods (unlearn --method):")
    for name, doc in describe_unlearning():
        print(f"  {name:<8} {doc}")
    return 0


def add_runs(sub) -> None:
    p = sub.add_parser("runs", help="list recorded runs", description="List the runs indexed under a runs directory.")
    root = RunConfig().root
    p.add_argument("--out", metavar="DIR", default=root, help=f"runs directory [default: {root}]")
    p.set_defaults(func=cmd_runs)


def cmd_runs(args) -> int:
    from rich.table import Table

    from ..report import fmt
    from ..runs import list_runs

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
