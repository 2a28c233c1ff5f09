"""`forgetlab rtt`: RTT on a saved model (a transformers directory or an `unlearn` run directory)."""

from __future__ import annotations

from pathlib import Path

from ..config import ModelConfig, RTTConfig, UnlearnConfig, build_config, read_yaml
from ..data.unlearn import FactSet, read_facts
from ..errors import UserError
from ..model import load_base
from ..runs import index_run, new_run_dir, read_json, write_json
from .rtt import run_rtt


def resolve(source: Path, forget: str | None, rtt: RTTConfig) -> tuple[Path, str, str, ModelConfig]:
    """(model directory, forget facts, original model, model settings) for a model or run directory."""
    if (source / "config.yaml").is_file() and (source / "metrics.json").is_file():
        cfg = build_config(UnlearnConfig, read_yaml(source / "config.yaml"), source=str(source / "config.yaml"))
        model_dir = source / "model"
        if not (model_dir / "config.json").is_file():
            raise UserError(f"{source}: the run saved no merged model (save: {cfg.save}); rerun unlearn with "
                            "--save merged, or pass a model directory")
        if cfg.learn_first and not forget:
            raise UserError(f"{source}: a --learn-first run; pass its forget facts as --forget MCQ_FILE")
        original = rtt.original or (str(source / "original") if cfg.learn_first else cfg.model.name)
        return model_dir, forget or cfg.forget_eval or cfg.forget or "builtin:animals", original, cfg.model
    if not (source / "config.json").is_file():
        raise UserError(f"--model {source}: not a model directory (no config.json) nor an unlearn run; pass the "
                        "run's directory or its model/ directory")
    if not forget:
        raise UserError("--forget MCQ_FILE is needed with a model directory (the facts to test recovery on)")
    return source, forget, rtt.original or "bundled", ModelConfig()


def run_rtt_command(source: Path, forget: str | None, rtt: RTTConfig, root: Path, console) -> Path:
    model_dir, forget_spec, original, model_cfg = resolve(source, forget, rtt)
    facts = read_facts(forget_spec)
    if len(facts.mcq()) < rtt.splits:
        raise UserError(f"{facts.name}: RTT needs at least {rtt.splits} MCQ facts (one per split); found "
                        f"{len(facts.mcq())}")
    model, tok = load_base(model_cfg.model_copy(update={"name": str(model_dir)}))
    out = new_run_dir(root, f"rtt-{source.name}")
    cfg, retain = scoring_config(source)
    sets = {"forget": facts, "forget_eval": facts, "retain": retain, "retain_eval": retain,
            **({"holdout": read_facts(cfg.holdout)} if cfg.holdout else {})}
    scores, reference = attacked_scores(model, tok, sets, cfg, source)
    summary = run_rtt(model, tok, facts, rtt, out, original=original, model_cfg=model_cfg, console=console)
    state = {"kind": "rtt", "model": str(model_dir), "forget": forget_spec, "original_model": original,
             "settings": rtt.model_dump(mode="json"), "rtt": summary, "scores": scores, "reference_model": reference,
             "status": "complete"}
    write_json(out / "metrics.json", state)
    from .unlearn_report import print_unlearn_rtt, write_rtt_report

    write_rtt_report(out, state)
    print_unlearn_rtt(console, state)
    index_run(root, out, "rtt", out.name, "complete", {"recovery_rate": summary["recovery_rate"]})
    return out


def scoring_config(source: Path) -> tuple[UnlearnConfig, FactSet]:
    """The settings and retain facts the model's own scores use: an unlearn run's (its retain set, none after
    --learn-first, whose facts live in the run), else the defaults with no retain set."""
    if (source / "config.yaml").is_file() and (source / "metrics.json").is_file():
        cfg = build_config(UnlearnConfig, read_yaml(source / "config.yaml"), source=str(source / "config.yaml"))
        if not cfg.learn_first:
            return cfg, read_facts(cfg.retain_eval or cfg.retain or "builtin:food")
        return cfg, FactSet("none", [])
    return build_config(UnlearnConfig, {}, source="rtt settings"), FactSet("none", [])


def attacked_scores(model, tok, sets: dict, cfg: UnlearnConfig, source: Path) -> tuple[dict, str | None]:
    """The full scoring of the model before any attack, and what its forget quality and privleak compared with:
    `guard.reference` where given (`--set guard.reference=MODEL`), else an unlearn run's own reference model (its
    scores kept in its metrics.json)."""
    from .unlearn import reference_of
    from .unlearn_scores import model_scores

    run = source / "metrics.json"
    reference, name = None, None
    if cfg.guard.reference:
        reference, name = reference_of(cfg, tok, sets), cfg.guard.reference
    elif run.is_file() and (source / "config.yaml").is_file():
        reference = read_json(run).get("reference")
        name = "the run's reference model" if reference else None
    return model_scores(model, tok, sets, cfg, reference), name
