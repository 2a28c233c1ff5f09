"""Attacks on an unlearned model besides RTT (recipes/rtt.py): what brings the facts back without training on them.

Benign relearning (`--attacks relearn`, Hu et al., 2024: public articles brought WMDP knowledge back): fine-tune the
full weights on text about the forget set's topic that states none of its answers (`relearn.file`; texts that hold a
forget answer as a word are left out; default: the retain facts as text) over RTT's learning-rate grid and epochs,
measuring every forget fact's option accuracy after each epoch — for the unlearned model and for the model before
unlearning (does the text itself teach the facts?). The best accuracy over lr × epoch, and the share of what
unlearning removed that comes back.

Quantization (`--attacks quant`): the unlearned model and the model before unlearning, each at full precision and
rounded to each of `quant.bits` (quantize.py). Per row: forget accuracy (option log-likelihood), forget QA (greedy
chat answers) and retain accuracy; per rounded unlearned row, the share of what unlearning took away that comes
back: (acc_rounded − acc_unlearned) / (acc_original − acc_unlearned), the original's rounded accuracy beside it (so
a drop the rounding causes by itself is seen as such).
"""

from __future__ import annotations

import re
from contextlib import nullcontext

from ..batching import encode_text
from ..config import UnlearnConfig
from ..data.unlearn import FactSet, read_facts
from ..errors import UserError
from ..metrics.unlearning import share_correct
from ..model import load_base
from ..quantize import quantized
from .unlearn_scores import forget_score


def comes_back(after: float, unlearned: float, original: float) -> float | None:
    """Share of the unlearned-away accuracy that an attack restores (None where unlearning removed nothing)."""
    gone = original - unlearned
    return (after - unlearned) / gone if gone > 1e-9 else None


def quant_attack(model, tok, sets: dict[str, FactSet], cfg: UnlearnConfig, original: str, log=print) -> dict:
    """The quantization attack's rows (see the module docstring); `model` is the unlearned model, merged."""
    from ..evaluate import mcq_option_logprobs

    rows = []
    retain = sets["retain_eval"].mcq()
    for label in ("original", "unlearned"):  # one model in memory at a time, rounded in place and put back
        m = load_base(cfg.model.model_copy(update={"name": original}))[0] if label == "original" else model
        for bits in (None, *cfg.quant.bits):
            with nullcontext() if bits is None else quantized(m, bits, cfg.quant.group_size):
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
    return {"rows": rows, "bits": list(cfg.quant.bits), "group_size": cfg.quant.group_size, "original": original}


def states(text: str, answer: str) -> bool:
    """Whether `text` holds `answer` as a word or phrase (case ignored): "Paris" in "to Paris." but not in "Parisian"."""
    return re.search(rf"(?<!\w){re.escape(answer.lower())}(?!\w)", text.lower()) is not None


def benign_texts(sets: dict[str, FactSet], cfg: UnlearnConfig) -> tuple[list[str], int]:
    """The relearning texts that state no forget answer, and how many were left out for stating one."""
    source = read_facts(cfg.relearn.file) if cfg.relearn.file else sets["retain"]
    answers = [f.answer for f in sets["forget"].facts if f.answer]
    texts = source.texts()
    keep = [t for t in texts if not any(states(t, a) for a in answers)]
    if not keep:
        raise UserError(f"{source.name}: every text states a forget answer, so relearning on it is not benign; give "
                        "relearn.file texts about the topic without the answers")
    return keep, len(texts) - len(keep)


def relearn_attack(model, tok, sets: dict[str, FactSet], cfg: UnlearnConfig, original: str, log=print,
                   clock: dict | None = None) -> dict:
    """The benign-relearning attack (see the module docstring); `model` is the unlearned model, merged."""
    from .rtt import best, retrain_curves

    texts, dropped = benign_texts(sets, cfg)
    rows = [encode_text(tok, t, 512) for t in texts]
    items = sets["forget_eval"].mcq()
    rc = cfg.relearn
    log(f"relearn: {len(texts)} benign texts ({dropped} left out for stating a forget answer), lr {list(rc.lrs)}, "
        f"{rc.epochs} epochs")
    run = lambda m, label, clk=None: retrain_curves(m, tok, [(rows, items)], rc.lrs, rc.epochs, rc.batch_size,
                                                    cfg.train.seed, label, log, clk)
    unlearned = run(model, "relearn unlearned", clock)
    before, _ = load_base(cfg.model.model_copy(update={"name": original}))
    orig = run(before, "relearn original")
    del before
    (u_best, u_lr, u_ep), (o_best, _, _) = best(unlearned), best(orig)
    u0, o0 = next(iter(unlearned.values()))[0], next(iter(orig.values()))[0]
    return {"texts": len(texts), "left_out": dropped, "source": cfg.relearn.file or sets["retain"].name,
            "original": o0, "original_relearned": o_best, "unlearned": u0, "unlearned_relearned": u_best,
            "comes_back": comes_back(u_best, u0, o0), "best_lr": u_lr, "best_epoch": u_ep,
            "curves": {"unlearned": {str(k): v for k, v in unlearned.items()},
                       "original": {str(k): v for k, v in orig.items()}}}

