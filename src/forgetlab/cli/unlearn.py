"""`forgetlab unlearn`, `forgetlab rtt` and `forgetlab sweep`: thin over recipes/."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import (
    LEARNING_RATES,
    METHOD_DEFAULTS,
    RTTConfig,
    RunConfig,
    SweepConfig,
    UnlearnConfig,
    build_config,
    read_yaml,
    rtt_section,
    yaml_value,
)
from ..errors import UserError
from .common import add_executor_args, comma_list, config_epilog, default_of, executor_flags, given, grid_exit, terminal

UNLEARN_EXAMPLES = """examples:
  forgetlab unlearn                                   # gd, LoRA rank 8, the built-in known facts (animals / food)
  forgetlab unlearn --method npo --lora-rank 0 --rtt  # full weights, then retrain on part of them (RTT)
  forgetlab unlearn --method rmu --forget wmdp_forget.jsonl --retain retain.jsonl --save adapter
  forgetlab unlearn --method gd --learn-first facts:people --rtt   # knowledge learned by fine-tuning
  forgetlab unlearn --attacks rtt,relearn,quant       # then retraining, benign text, 8/4-bit rounding try to bring it back
  forgetlab unlearn --list
"""

RTT_EXAMPLES = """examples:
  forgetlab rtt --model runs/20261124-150000-unlearn-gd-r8            # a run directory: its model, facts, base
  forgetlab rtt --model ./unlearned --forget forget_mcq.jsonl --original bundled --splits 5 --holdout-splits 2
"""


def add_unlearn(sub) -> None:
    p = sub.add_parser("unlearn", help="make the model forget facts (LoRA or full weights); measure, save, RTT",
                       description="Unlearn a set of facts with one of seven methods, LoRA of any rank or full "
                       "weights. Guarded: every few steps (guard.eval_every) it measures forget and retain accuracy "
                       "(per-option log-likelihood) and the built-in general questions, stops once the forget facts "
                       "are near chance (guard.target) and at most 20% of their greedy chat answers still say them "
                       "(guard.qa_target, checked once the options say forgotten), or when retain or general fall "
                       "below their floors (0.9x and 0.8x their start) — before anything was acceptable, it goes "
                       "back to the last check above them instead and carries on at half the learning rate, twice "
                       "at most (guard.backtracks) —, and keeps the best checkpoint: the lowest "
                       "forget accuracy, forgotten, with both floors held. The start and the kept step are also "
                       "scored by letters and greedy QA. Saves the "
                       "kept model merged into plain transformers weights (or the adapter); a run with no acceptable "
                       "checkpoint saves its nearest miss as rejected-model and exits 3. With --rtt, retrains on "
                       "part of the forgotten facts to test whether the rest comes back.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=UNLEARN_EXAMPLES + "\n" + config_epilog(UnlearnConfig, skip=("eval.qa",)))  # QA: always
    p.add_argument("--list", action="store_true", help="list the unlearning methods and exit")
    p.add_argument("--method", metavar="NAME", help="ga, gd, whp (ria), fwf, rmu, npo, simnpo "
                   f"[default: {default_of(UnlearnConfig, 'method.name')}]")
    p.add_argument("--lora-rank", type=int, metavar="R", help="LoRA rank on all seven projections, alpha 2R; 0: full "
                   f"weights [default: {default_of(UnlearnConfig, 'lora.rank')}]")
    p.add_argument("--forget", metavar="FILE", help="facts to forget (MCQ, corpus, QA or file: records) "
                   "[default: built-in animals]")
    p.add_argument("--forget-eval", metavar="FILE", help="facts to measure forgetting on [default: --forget]")
    p.add_argument("--retain", metavar="FILE", help="facts to keep [default: built-in food]")
    p.add_argument("--retain-eval", metavar="FILE", help="facts to measure retention on [default: --retain]")
    p.add_argument("--holdout", metavar="FILE", help="facts like the forget ones that no model saw: the non-members "
                   "of the min-k%% membership tests (min-k AUC, privleak) [default: none; with --learn-first, people "
                   "the task never taught]")
    p.add_argument("--learn-first", metavar="TASK", help="fine-tune on TASK (e.g. facts:people) first, then unlearn "
                   "part of it")
    p.add_argument("--rtt", action="store_true", help="after unlearning, run RTT on the forget MCQ facts")
    p.add_argument("--attacks", type=attack_list, metavar="LIST", help="after unlearning, try to bring the facts "
                   "back: rtt (retraining on part of them, as --rtt), relearn (fine-tuning on benign text that states "
                   "none of them: relearn.file, default the retain facts), quant (the weights rounded to 8 and 4 "
                   "bits: quant.bits); comma-separated, e.g. rtt,relearn,quant")
    p.add_argument("--no-guard", action="store_true", help="train every epoch and keep the last step: no early stop, "
                   "no floors (writes guard.enabled=false)")
    p.add_argument("--save", choices=("merged", "adapter", "none"), help="merged: plain transformers directory "
                   "[default]; adapter: the PEFT adapter; none")
    p.add_argument("--optimizer", choices=("adamw", "lion"), help=f"[default: {default_of(UnlearnConfig, 'train.optimizer')}]")
    p.add_argument("--epochs", type=int, help=f"unlearning epochs (writes train.epochs) [default: "
                   f"{default_of(UnlearnConfig, 'train.epochs')}; {method_defaults('train.epochs')}]")
    p.add_argument("--lr", type=float, help="learning rate at any rank (writes train.lr) [default: by rank, LoRA / "
                   f"full weights: {lr_defaults()}]")
    p.add_argument("--seed", type=int, help="training seed")
    p.add_argument("--model", help="'bundled', a hub id or a local HF directory")
    p.add_argument("--config", metavar="YAML", help="a config file (its keys are listed below)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeat)")
    p.add_argument("--name", help="run name")
    p.add_argument("--out", metavar="DIR", help=f"where run directories go [default: {default_of(UnlearnConfig, 'run.root')}]")
    p.add_argument("--log", choices=["tensorboard", "wandb", "mlflow"], help="also log the run (every step, every "
                   "guard check, the final tables) to TensorBoard, Weights & Biases (offline) or MLflow, in its run "
                   "directory")
    p.set_defaults(func=cmd_unlearn)


def method_defaults(key: str) -> str:
    """'rmu 6' for train.epochs: the methods whose own default differs."""
    return "; ".join(f"{m} {d[key]}" for m, d in METHOD_DEFAULTS.items() if key in d)


def lr_defaults() -> str:
    """'1e-3 / 3e-5; rmu 2e-3 / 5e-3' from the config's learning rates."""
    pair = lambda d: f"{d['lora']:g} / {d['full']:g}"
    return "; ".join([pair(LEARNING_RATES)] + [f"{m} {pair(d['lr'])}" for m, d in METHOD_DEFAULTS.items() if "lr" in d])


ATTACKS = ("rtt", "relearn", "quant")


def attack_list(text: str) -> tuple[str, ...]:
    """--attacks rtt,quant -> ("rtt", "quant"); an unknown name is a usage error."""
    import argparse

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in ATTACKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown attack {', '.join(bad) or repr(text)}; valid: {', '.join(ATTACKS)}")
    return names


def unlearn_config(args) -> UnlearnConfig:
    flags = {"method.name": args.method, "lora.rank": args.lora_rank, "forget": args.forget,
             "forget_eval": args.forget_eval, "retain": args.retain, "retain_eval": args.retain_eval, "holdout": args.holdout,
             "learn_first": args.learn_first, "save": args.save,
             "rtt.enabled": True if args.rtt or "rtt" in (args.attacks or ()) else None,
             "quant.enabled": True if "quant" in (args.attacks or ()) else None,
             "relearn.enabled": True if "relearn" in (args.attacks or ()) else None,
             "guard.enabled": False if args.no_guard else None,
             "train.optimizer": args.optimizer, "train.epochs": args.epochs, "train.lr": args.lr, "train.seed": args.seed,
             "model.name": args.model, "run.name": args.name, "run.root": args.out, "run.log": args.log}
    base = read_yaml(args.config) if args.config else {}
    if "rtt" in base:  # `rtt: true` in the file, then --rtt or --set rtt.epochs=... on top of it
        base["rtt"] = rtt_section(base["rtt"])
    return build_config(UnlearnConfig, base, given(flags), args.set,
                        source=args.config or "config")


def list_methods() -> int:
    from ..unlearning import describe

    for name, doc in describe():
        print(f"{name:<8} {doc}")
    return 0


def cmd_unlearn(args) -> int:
    if args.list:
        return list_methods()
    from ..recipes.unlearn import run_unlearn
    from ..unlearning import check_inputs

    cfg = unlearn_config(args)
    check_inputs(cfg)
    console = terminal()
    run_dir = run_unlearn(cfg, console=console)
    console.print(f"run directory: {run_dir}\nreport: {run_dir / 'report.html'}")
    return 0


def add_rtt(sub) -> None:
    p = sub.add_parser("rtt", help="retrain on part of the forgotten facts: did unlearning remove or hide them?",
                       description="Split the forget MCQ facts into K splits; hold out each of the first N in turn, "
                       "fine-tune the full weights on the rest over a learning-rate grid, and record accuracy on the "
                       "held-out facts after every epoch, for the given model and for the original. Prints original, "
                       "unlearned, unlearned + RTT and original + RTT accuracy, the recovery rate, the recovered share "
                       "and the recovery epoch; writes rtt.csv, a plot and report.html in a new run directory.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=RTT_EXAMPLES)
    p.add_argument("--model", required=True, metavar="DIR|RUN_DIR", help="the unlearned model: a transformers "
                   "directory, or an `unlearn` run directory (its saved model, forget facts and original)")
    p.add_argument("--forget", metavar="MCQ_FILE", help="forget facts as MCQ records (default with a run directory: "
                   "the run's)")
    p.add_argument("--original", metavar="MODEL", help="the model before unlearning [default: the run's, else bundled]")
    p.add_argument("--splits", type=int, help=f"number of splits K [default: {default_of(RTTConfig, 'splits')}]")
    p.add_argument("--holdout-splits", type=int, help="the first N splits are held out in turn "
                   f"[default: {default_of(RTTConfig, 'holdout_splits')}]")
    p.add_argument("--lrs", metavar="A,B,...", help=f"learning-rate grid [default: {default_of(RTTConfig, 'lrs')}]")
    p.add_argument("--epochs", type=int, help=f"epochs per RTT run [default: {default_of(RTTConfig, 'epochs')}]")
    p.add_argument("--seed", type=int)
    root = RunConfig().root
    p.add_argument("--out", metavar="DIR", default=root, help=f"where the run directory goes [default: {root}]")
    p.set_defaults(func=cmd_rtt)


def cmd_rtt(args) -> int:
    from ..recipes.rtt_cmd import run_rtt_command

    source = Path(args.model).expanduser()
    if not source.is_dir():
        raise UserError(f"--model {args.model}: not a directory; pass a transformers model directory or an unlearn run")
    rtt = build_config(RTTConfig, {}, {k: v for k, v in {"splits": args.splits, "holdout_splits": args.holdout_splits,
                                                          "lrs": comma_list(args.lrs, float, "--lrs", "1e-4,3e-4"),
                                                          "epochs": args.epochs, "seed": args.seed,
                                                          "original": args.original}.items() if v is not None},
                       source="rtt settings")
    console = terminal()
    out = run_rtt_command(source, args.forget, rtt, Path(args.out), console)
    console.print(f"run directory: {out}\nreport: {out / 'report.html'}")
    return 0


def add_attack(sub) -> None:
    p = sub.add_parser("attack", help="try to bring unlearned facts back: retraining, benign text, quantization",
                       description="The attacks of `unlearn --attacks` on a model already unlearned and saved: rtt "
                       "(retrain on part of the forget facts, measure the rest), relearn (fine-tune on benign text "
                       "that states none of them), quant (round the weights to 8 and 4 bits). Each is run on the "
                       "model and on the original; prints one table per attack with the share of what unlearning "
                       "removed that comes back, writes metrics.json, plots and report.html in a new run directory.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  forgetlab attack --model runs/<unlearn run> --attacks quant\n"
                              "  forgetlab attack --model runs/<unlearn run> --attacks relearn "
                              "--relearn-file examples/attacks/animals_text.jsonl\n"
                              "  forgetlab attack --model ./unlearned --forget forget.jsonl --retain retain.jsonl "
                              "--attacks rtt,quant")
    p.add_argument("--model", required=True, metavar="DIR|RUN_DIR", help="the unlearned model: an `unlearn` run "
                   "directory (its saved merged model, facts and original), or a transformers directory")
    p.add_argument("--attacks", type=attack_list, required=True, metavar="LIST", help="rtt, relearn, quant; "
                   "comma-separated")
    p.add_argument("--forget", metavar="MCQ_FILE", help="the forget facts [default with a run directory: the run's]")
    p.add_argument("--retain", metavar="FILE", help="the retain facts [default with a run directory: the run's]")
    p.add_argument("--relearn-file", metavar="FILE", help="benign text for relearn (writes relearn.file) [default: "
                   "the retain facts]")
    p.add_argument("--bits", metavar="A,B", help="quant precisions (writes quant.bits) [default: 8,4]")
    p.add_argument("--original", metavar="MODEL", help="the model before unlearning [default: the run's, else bundled]")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any unlearn key (rtt.*, "
                   "relearn.*, quant.*)")
    root = RunConfig().root
    p.add_argument("--out", metavar="DIR", default=root, help=f"where the run directory goes [default: {root}]")
    p.set_defaults(func=cmd_attack)


def cmd_attack(args) -> int:
    from ..recipes.attack_cmd import run_attack_command

    source = Path(args.model).expanduser()
    if not source.is_dir():
        raise UserError(f"--model {args.model}: not a directory; pass an unlearn run or a transformers model directory")
    overrides = given({"relearn.file": args.relearn_file, "rtt.original": args.original,
                       "quant.bits": comma_list(args.bits, int, "--bits", "8,4")})
    console = terminal()
    out = run_attack_command(source, args.attacks, args.forget, args.retain, overrides, args.set, Path(args.out),
                             console)
    console.print(f"run directory: {out}\nreport: {out / 'report.html'}")
    return 0


SWEEP_EXAMPLES = """examples:
  forgetlab sweep --config configs/sweep/small.yaml                    # minutes on a laptop: ranks 1, 8 and full
  forgetlab sweep --config configs/sweep/lora_rank.yaml                # ranks 1-32 × gd, npo × 2 seeds
  forgetlab sweep --config configs/sweep/small.yaml --axis method.name=gd,npo --axis seed=0,1
  forgetlab sweep --config configs/sweep/lora_rank.yaml --address auto --cpus-per-run 4   # on a Ray cluster
  forgetlab sweep --resume runs/20261124-180000-sweep-rank             # run only the points still missing

The YAML has `unlearn:` (the keys of `forgetlab unlearn --config`) and `axes:` (dotted keys of that config -> lists
of values; short names: seed, method, rank, rc, lr). Every combination is one point: an unlearn run, then RTT.
"""


def add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="a grid of unlearn + RTT runs on Ray (local or a cluster): recovery by LoRA rank",
                       description="Run every combination of the axes' values as an unlearn run followed by RTT, each "
                       "as a Ray task (a local Ray instance unless --address joins a cluster), and tabulate the RTT "
                       "recovery by LoRA rank. Points stream back as they finish; a failing point is reported with "
                       "its error and the others finish; --resume runs only the missing points. Writes sweep.csv, "
                       "recovery_vs_rank.csv, plots and report.html.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=SWEEP_EXAMPLES + "\n" + config_epilog(SweepConfig))
    p.add_argument("--config", metavar="YAML", help="the sweep: unlearn: and axes: sections")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the sweep config, e.g. unlearn.train.epochs=1 (repeat)")
    p.add_argument("--axis", action="append", default=[], metavar="KEY=V1,V2", help="add or replace an axis, e.g. "
                   "lora.rank=1,8,32 (repeat)")
    add_executor_args(p)
    p.add_argument("--resume", metavar="DIR", help="finish a sweep: finished points are read back, the rest run")
    p.add_argument("--name", help="sweep name")
    p.add_argument("--out", metavar="DIR", help="where the sweep directory goes "
                   f"[default: {default_of(SweepConfig, 'run.root')}]")
    p.set_defaults(func=cmd_sweep)


def parse_axis(item: str) -> tuple[str, list]:
    """'lora.rank=1,8,32' -> ("lora.rank", [1, 8, 32]); each value parsed as a YAML scalar."""

    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--axis {item}: expected key=v1,v2,..., e.g. --axis lora.rank=1,8,32")
    values = []
    for text in raw.split(","):
        if text.strip():
            values.append(yaml_value(text.strip()))
    return key.strip(), values


def cmd_sweep(args) -> int:
    from ..recipes.sweep import run_sweep

    flags = dict(executor_flags(args), **{"run.name": args.name, "run.root": args.out})
    flags = given(flags)
    if args.resume:
        if args.config or args.set or args.axis or args.name or args.out:
            raise UserError("--resume finishes the sweep as it was configured; drop --config/--set/--axis/--name/--out "
                            "(or start a new sweep)")
        out = Path(args.resume)
        if not (out / "config.yaml").is_file():
            raise UserError(f"--resume {out}: not a sweep directory (no config.yaml); pass a directory made by "
                            "`forgetlab sweep`")
        base, source = read_yaml(out / "config.yaml"), str(out / "config.yaml")
    elif not args.config and not args.axis:
        raise UserError("nothing to sweep; pass --config FILE (e.g. configs/sweep/small.yaml) or --axis key=v1,v2")
    else:
        out, base, source = None, read_yaml(args.config) if args.config else {}, args.config or "sweep"
    if args.axis:
        axes = dict(base.get("axes") or {})
        axes.update(parse_axis(item) for item in args.axis)
        base = dict(base, axes=axes)
    cfg = build_config(SweepConfig, base, flags, args.set, source=source)
    console = terminal()
    out = run_sweep(cfg, resume=out, console=console)
    console.print(f"sweep: {out}\ntable: {out / 'recovery_vs_rank.csv'}\nreport: {out / 'report.html'}")
    return grid_exit(out, "sweep.json")
