"""Attacks on an unlearned model besides RTT (recipes/rtt.py): what brings the facts back without training on them.

Quantization (`--attacks quant`): the unlearned model and the model before unlearning, each at full precision and
rounded to each of `quant.bits` (quantize.py). Per row: forget accuracy (option log-likelihood), forget QA (greedy
chat answers) and retain accuracy; per rounded unlearned row, the share of what unlearning took away that comes
back: (acc_rounded − acc_unlearned) / (acc_original − acc_unlearned), the original's rounded accuracy beside it (so
a drop the rounding causes by itself is seen as such).
"""

from __future__ import annotations

import copy

from ..config import UnlearnConfig
from ..data.unlearn import FactSet
from ..metrics.unlearning import share_correct
from ..model import load_base
from ..quantize import quantize_model
from .unlearn_scores import forget_score


def comes_back(after: float, unlearned: float, original: float) -> float | None:
    """Share of the unlearned-away accuracy that an attack restores (None where unlearning removed nothing)."""
    gone = original - unlearned
    return (after - unlearned) / gone if gone > 1e-9 else None


def quant_attack(model, tok, sets: dict[str, FactSet], cfg: UnlearnConfig, original: str, log=print) -> dict:
    """The quantization attack's rows (see the module docstring); `model` is the unlearned model, merged."""
    from ..evaluate import mcq_option_logprobs

    before, _ = load_base(cfg.model.model_copy(update={"name": original}))
    rows = []
    retain = sets["retain_eval"].mcq()
    for label, base in (("original", before), ("unlearned", model)):
        for bits in (None, *cfg.quant.bits):
            m = base if bits is None else copy.deepcopy(base)
            if bits is not None:
                quantize_model(m, bits, cfg.quant.group_size)
            row = {"model": label, "bits": bits or "full", "forget_acc": forget_score(m, tok, sets),
                   "forget_qa": forget_score(m, tok, sets, qa=True, max_new_tokens=cfg.eval.max_new_tokens),
                   "retain_acc": share_correct(mcq_option_logprobs(m, tok, retain), [it.answer for it in retain])
                   if retain else None}
            rows.append(row)
            log(f"quant: {label} {row['bits']}{'-bit' if bits else ''}: forget {row['forget_acc']:.2f}, "
                f"QA {row['forget_qa']:.2f}")
            del m
    full = {r["model"]: r for r in rows if r["bits"] == "full"}
    for r in rows:
        if r["model"] == "unlearned" and r["bits"] != "full":
            r["comes_back"] = comes_back(r["forget_acc"], full["unlearned"]["forget_acc"], full["original"]["forget_acc"])
    del before
    return {"rows": rows, "bits": list(cfg.quant.bits), "group_size": cfg.quant.group_size, "original": original}
