"""`forgetlab attack`: the attacks of `unlearn --attacks` on a model already unlearned and saved — an `unlearn` run
directory (its merged model, facts, original and settings) or a transformers directory with the facts given."""

from __future__ import annotations

from pathlib import Path

from ..config import RTTConfig, UnlearnConfig, build_config, read_yaml
from ..errors import UserError
from ..model import load_base
from ..runs import index_run, new_run_dir, write_json
from .rtt_cmd import attacked_scores, resolve


def attack_config(source: Path, forget: str | None, retain: str | None, overrides: dict,
                  sets: list[str]) -> tuple[UnlearnConfig, Path, str]:
    """The run's unlearn config (or the defaults beside a bare model directory) with the attacks' settings on top;
    the model directory and the original model."""
    run = (source / "config.yaml").is_file() and (source / "metrics.json").is_file()
    base = read_yaml(source / "config.yaml") if run else {}
    if run and base.get("learn_first") and not (forget and retain):
        raise UserError(f"{source}: a --learn-first run; pass its facts as --forget MCQ_FILE --retain FILE")
    base.pop("learn_first", None)
    for key, value in (("forget", forget), ("forget_eval", forget), ("retain", retain), ("retain_eval", retain)):
        if value:
            base[key] = value
    cfg = build_config(UnlearnConfig, base, overrides, sets,
                       source=str(source / "config.yaml") if run else "attack settings")
    model_dir, _, original, _ = resolve(source, forget or "-", RTTConfig(original=cfg.rtt.original))
    if not run and not forget:
        raise UserError("--forget MCQ_FILE is needed with a model directory (the facts to attack)")
    return cfg, model_dir, original


def run_attack_command(source: Path, attacks: tuple[str, ...], forget: str | None, retain: str | None,
                       overrides: dict, set_items: list[str], root: Path, console) -> Path:
    from .attacks import benign_texts, quant_attack, relearn_attack
    from .rtt import run_rtt
    from .unlearn import fact_sets

    cfg, model_dir, original = attack_config(source, forget, retain, overrides, set_items)
    sets = fact_sets(cfg)
    if not sets["forget_eval"].mcq():
        raise UserError(f"{sets['forget_eval'].name}: the attacks measure MCQ forget facts and found none")
    if "relearn" in attacks:
        benign_texts(sets, cfg)  # bad or all-answer texts fail before the model loads
    if "rtt" in attacks and len(sets["forget_eval"].mcq()) < cfg.rtt.splits:
        raise UserError(f"{sets['forget_eval'].name}: RTT needs at least {cfg.rtt.splits} MCQ facts")
    model, tok = load_base(cfg.model.model_copy(update={"name": str(model_dir)}))
    out = new_run_dir(root, f"attack-{source.name}")
    say = console.print if console else print
    state = {"kind": "attack", "model": str(model_dir), "forget": sets["forget"].name, "retain": sets["retain"].name,
             "original_model": original, "attacks": list(attacks), "status": "incomplete"}
    state["scores"], state["reference_model"] = attacked_scores(model, tok, sets, cfg, source)
    if "rtt" in attacks:
        state["rtt"] = run_rtt(model, tok, sets["forget_eval"], cfg.rtt,
                               out, original=original, model_cfg=cfg.model, console=console)
    if "relearn" in attacks:
        state["relearn"] = relearn_attack(model, tok, sets, cfg, original, log=say)
    if "quant" in attacks:
        state["quant"] = quant_attack(model, tok, sets, cfg, original, log=say)
    state["status"] = "complete"
    write_json(out / "metrics.json", state)
    from ..report import print_tables, write_page
    from .unlearn_report import UNLEARN_TERMS, plots, quant_table, relearn_table, rtt_table, scores_table

    tables = [scores_table(state["scores"], state["reference_model"])]
    tables += [t for key, make in (("rtt", rtt_table), ("relearn", relearn_table), ("quant", quant_table))
               if key in state for t in [make(state[key])]]
    write_page(out, f"forgetlab attack: {out.name}", f"model: {model_dir} · forget: {sets['forget'].name} · "
               f"original: {original}", tables, plots(out, state),
               settings={"attacks": ", ".join(attacks), "rtt.lrs": cfg.rtt.lrs, "relearn.lrs": cfg.relearn.lrs,
                         "quant.bits": cfg.quant.bits, "seed": cfg.train.seed}, terms=UNLEARN_TERMS)
    print_tables(console, tables, first_left=False)
    index_run(root, out, "attack", out.name, "complete", {})
    return out

