"""What `forgetlab unlearn` measures on a model. The guards' cheap scores at every check (forget and retain option
log-likelihood, the general questions) and, at the start and the kept step, the full scoring: letters, greedy QA,
losses and the field's unlearning measures: TOFU's answer
probability, ROUGE-L recall, truth ratio, model utility and forget quality, and the min-k% / min-k%++ membership
tests with MUSE's privacy leakage. The definitions are in metrics/tofu.py and metrics/mia.py; this module reads the
model (evaluate.py's teacher-forced passes) and names the columns.

Where the numbers come from: each question is asked through the chat template and the answer is scored as the
model's own turn (its end-of-turn token included), as open-unlearning scores a chat model. The truth ratio compares
a fact's answer (TOFU's `paraphrased_answer` where the record has one) with its wrong ones (TOFU's
`perturbed_answer`, or an MCQ record's other choices). Forget quality and privacy leakage need a reference model
that never saw the forget facts (`guard.reference`, or the model before `--learn-first` taught them); the
membership tests need `holdout` facts of the same kind that no model was trained on."""

from __future__ import annotations

from statistics import fmean

from ..batching import encode_text, fixed_batches
from ..config import UnlearnConfig
from ..data.unlearn import Fact, FactSet
from ..evaluate import (
    answer_nlls,
    general_score,
    mcq_letter_probs,
    mcq_option_logprobs,
    mean_loss,
    qa_rows,
    qa_scores_of_sets,
    token_statistics,
)
from ..metrics import mia, tofu
from ..metrics.unlearning import calibrated_choice, share_correct

COLUMNS = [("forget_prob", "forget prob"), ("forget_rouge", "forget ROUGE-L"), ("forget_tr", "forget truth ratio"),
           ("forget_quality", "forget quality"), ("retain_prob", "retain prob"), ("retain_rouge", "retain ROUGE-L"),
           ("retain_tr", "retain truth ratio"), ("utility", "model utility"), ("mink_auc", "min-k AUC"),
           ("minkpp_auc", "min-k++ AUC"), ("privleak", "privleak")]
"""The columns this module adds to unlearn.csv and the table (key, heading)."""

K = 0.4
"""The share of tokens min-k% and min-k%++ average (open-unlearning's TOFU and MUSE settings)."""


def answered(facts: FactSet) -> list[Fact]:
    return [f for f in facts.facts if f.question and f.answer]


def answer_losses(model, tok, facts: list[Fact], max_length: int) -> list[dict]:
    """Per fact, the mean nll per token of its answer ("answer"), of the truth ratio's correct answer (TOFU's
    paraphrase where there is one, else the answer: "correct") and of its wrong answers (TOFU's perturbed ones, or
    an MCQ record's other choices: "wrong"), all in one batched pass."""
    pairs, spans = [], []
    for f in facts:
        wrong = f.perturbed or f.wrong
        correct = [f.paraphrased] if f.paraphrased else []
        spans.append((len(pairs), len(correct), len(wrong)))
        pairs += [(f.question, a) for a in [f.answer, *correct, *wrong]]
    nll = answer_nlls(model, tok, qa_rows(tok, pairs, max_length))
    return [{"answer": nll[at], "correct": nll[at + c], "wrong": nll[at + 1 + c:at + 1 + c + n]} for at, c, n in spans]


def truth_ratios(losses: list[dict]) -> list[float]:
    """tr = P(wrong) / P(correct) (metrics.tofu.truth_ratio) of each fact with wrong answers."""
    return [tofu.truth_ratio(x["correct"], x["wrong"]) for x in losses if x["wrong"]]


def probability(facts: list[Fact], losses: list[dict]) -> float:
    """TOFU's answer probability: exp(−mean nll) of the answer; for a fact with choices (MCQ), normalised over its
    choices, as TOFU scores its sets with options (real authors, world facts) — a terse option would otherwise
    score next to nothing against the model's full-sentence chat answer."""
    return fmean(tofu.normalised_probability(x["answer"], x["wrong"]) if f.choices else tofu.probability(x["answer"])
                 for f, x in zip(facts, losses, strict=True))


def membership(model, tok, members: list[Fact], holdout: list[Fact], max_length: int) -> dict:
    """min-k% and min-k%++ scores of each fact's scored tokens — a QA fact's answer as the chat turn, a text
    (MUSE's raw layout) every token after the first; the last left out, as open-unlearning does — and their AUCs
    with the forget facts as members and the holdout facts as non-members."""
    def scores(facts):
        rows = [qa_rows(tok, [(f.question, f.answer)], max_length)[0] if f.question else
                encode_text(tok, f.text, max_length) for f in facts]
        stats = token_statistics(model, tok, rows, drop_last=True)
        return ([mia.min_k(s["logprob"], K) for s in stats],
                [mia.min_k_plus_plus(s["logprob"], s["mean"], s["var"], K) for s in stats])

    (mk_in, pp_in), (mk_out, pp_out) = scores(members), scores(holdout)
    return {"mink_auc": mia.auc(mk_in, mk_out), "minkpp_auc": mia.auc(pp_in, pp_out)}


def scorable(facts: FactSet) -> list[Fact]:
    """The facts a membership test can score: a question with its answer, or a text."""
    return [f for f in facts.facts if (f.question and f.answer) or f.text]


def reference_scores(model, tok, sets: dict[str, FactSet], holdout: FactSet | None, max_length: int) -> dict:
    """What forget quality and privacy leakage compare against, read once from the reference model: its per-fact
    truth ratios on the forget facts and its min-k% AUC."""
    out = {"forget_tr_items": truth_ratios(answer_losses(model, tok, answered(sets["forget_eval"]), max_length))}
    if holdout is not None:
        out.update(membership(model, tok, scorable(sets["forget"]), scorable(holdout), max_length))
    return out


def field_scores(model, tok, sets: dict[str, FactSet], answers: dict[str, list[str]], holdout: FactSet | None,
                 reference: dict | None, max_length: int) -> dict:
    """The columns of COLUMNS for this model (None where the data cannot give one). `answers`: the greedy answers
    already generated for the forget and retain questions (the full scoring's QA), in `answered` order."""
    out: dict = {}
    items: list[float] = []
    for k in ("forget", "retain"):
        facts = answered(sets[f"{k}_eval"])
        if not facts:
            continue
        losses = answer_losses(model, tok, facts, max_length)
        out[f"{k}_prob"] = probability(facts, losses)
        if answers.get(k):
            out[f"{k}_rouge"] = fmean(tofu.rouge_l(a, f.answer)["recall"]
                                      for a, f in zip(answers[k], facts, strict=True))
        ratios = truth_ratios(losses)
        if ratios:
            out[f"{k}_tr"] = (tofu.truth_ratio_forget if k == "forget" else tofu.truth_ratio_kept)(ratios)
            if k == "forget":
                items = ratios
    utility = [out.get(k) for k in ("retain_prob", "retain_rouge", "retain_tr")]
    out["utility"] = tofu.model_utility(utility) if any(v is not None for v in utility) else None
    if reference and items and reference.get("forget_tr_items"):
        out["forget_quality"] = tofu.forget_quality(items, reference["forget_tr_items"])
    if holdout is not None:
        out.update(membership(model, tok, scorable(sets["forget"]), scorable(holdout), max_length))
        # without a reference model, open-unlearning compares with an AUC of 0.5 (no membership signal)
        out["privleak"] = mia.privleak(out["mink_auc"], (reference or {}).get("mink_auc", 0.5))
    return out


def forget_score(model, tok, sets: dict[str, FactSet], qa: bool = False, max_new_tokens: int = 16) -> float:
    """Forget accuracy by option log-likelihood, or (`qa`, or no choices) the share of greedy answers holding it."""
    items = sets["forget_eval"].mcq()
    was = model.training
    model.eval()
    try:
        if items and not qa:
            return share_correct(mcq_option_logprobs(model, tok, items), [it.answer for it in items])
        return qa_scores_of_sets(model, tok, {"f": sets["forget_eval"].qa()}, max_new_tokens)["f"]["contains"]
    finally:
        model.train(was)


def evaluate_unlearning(model, tok, sets: dict[str, FactSet], cfg: UnlearnConfig, loss_sets: dict | None,
                        reference: dict | None = None) -> dict:
    """Forget and retain accuracy by option log-likelihood and the general questions; in full (`loss_sets` given)
    also letters, calibrated letters, QA contains, the text losses and the field's measures (`field_scores`, against
    `reference`: `reference_scores` of a model that never saw the forget facts). The cheap part is what the guards
    read."""
    was_training = model.training
    model.eval()
    try:
        out = {}
        full = loss_sets is not None
        qa = {k: sets[f"{k}_eval"].qa() for k in ("forget", "retain")}
        cheap_qa = {k: v for k, v in qa.items() if not sets[f"{k}_eval"].mcq()}  # QA is the only score of such a set
        answers = qa_scores_of_sets(model, tok, qa if full else cheap_qa, cfg.eval.max_new_tokens, cfg.eval.batch_size * 4)
        for k in ("forget", "retain"):
            items = sets[f"{k}_eval"].mcq()
            if items:
                answers_ = [it.answer for it in items]
                out[f"{k}_ll"] = share_correct(mcq_option_logprobs(model, tok, items), answers_)
                if full:
                    probs = mcq_letter_probs(model, tok, items, cfg.eval.batch_size)
                    out[f"{k}_letter"] = share_correct(probs, answers_)
                    out[f"{k}_letter_cal"] = (sum(c == a for c, a in zip(calibrated_choice(probs), answers_, strict=True))
                                              / len(items))
                    if k == "retain" and cfg.eval.retain_shots:
                        shot = mcq_option_logprobs(model, tok, items, shots=cfg.eval.retain_shots)
                        out["retain_kshot"] = share_correct(shot, answers_)
            out[f"{k}_qa"] = answers[k]["contains"] if k in answers and answers[k]["n"] else None
            if full:
                out[f"{k}_loss"] = mean_loss(model, loss_sets[k]) if loss_sets[k] else None
        out["general"] = general_score(model, tok, cfg.general) if cfg.general.enabled else None
        if full:
            out.update(field_scores(model, tok, sets, {k: answers[k].get("answers") for k in answers}, sets.get("holdout"),
                                    reference, cfg.train.max_length))
    finally:
        model.train(was_training)
    return out


def loss_batches(sets: dict[str, FactSet], tok, max_length: int) -> dict[str, list[dict]]:
    """The forget and retain facts' training rows in fixed batches: the text losses of the full scoring."""
    return {k: fixed_batches(sets[k].rows(tok, max_length), 16, tok.pad_token_id) for k in ("forget", "retain")}


def model_scores(model, tok, sets: dict[str, FactSet], cfg: UnlearnConfig, reference: dict | None) -> dict:
    """The full scoring of a model as it is (what `attack` and `rtt` report of the model they attack)."""
    return evaluate_unlearning(model, tok, sets, cfg, loss_batches(sets, tok, cfg.train.max_length), reference)
