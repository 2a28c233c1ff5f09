"""MCQ evaluation: letter logits, batched, one pass per question, against one forward pass per option.

The baseline scores each answer letter as its own continuation of the prompt (lm-eval-harness's way for
multiple-choice: the log-likelihood of "A", "B", ... each from its own forward pass) and picks the best.
Both must give identical answers; the ratio is questions per second.
"""

from __future__ import annotations

import torch

from common import bundled, timed
from forgetlab.batching import prompt_ids
from forgetlab.config import DataConfig
from forgetlab.data import load_task
from forgetlab.data.records import mcq_prompt, user
from forgetlab.evaluate import letter_ids, mcq_predictions


@torch.no_grad()
def per_option(model, tok, items) -> list[int]:
    letters = letter_ids(tok, 4)
    preds = []
    for it in items:
        prompt = prompt_ids(tok, user(mcq_prompt(it)))
        scores = []
        for k in range(len(it.options)):
            ids = torch.tensor([prompt + [letters[k]]])
            logp = torch.log_softmax(model(ids).logits[0, -2].float(), -1)[letters[k]]
            scores.append(float(logp))
        preds.append(max(range(len(scores)), key=scores.__getitem__))
    return preds


def option_rows(model, tok, items) -> list[list[float]]:
    """The baseline for option log-likelihood: every prompt + option as its own row (batched by length), the prompt
    run again for each option."""
    from forgetlab.batching import encode_continuation
    from forgetlab.data.unlearn import qa_prompt
    from forgetlab.forward import per_row
    from forgetlab.losses import answer_logprobs

    rows = [(i, encode_continuation(tok, qa_prompt(it.question), " " + o, 512)) for i, it in enumerate(items)
            for o in it.options]
    scores = per_row(model, [r for _, r in rows], tok.pad_token_id, lambda m, b, _: answer_logprobs(m, b)[0].tolist(),
                     32, by_length=True)
    out: list[list[float]] = [[] for _ in items]
    for (i, _), v in zip(rows, scores, strict=True):
        out[i].append(v)
    return out


def main() -> dict:
    model, tok = bundled()
    items = [it for d in ("people", "elements", "festivals")
             for it in load_task(f"facts:{d}", DataConfig()).mcq["held_out"]]
    mcq_predictions(model, tok, items[:4])  # warm-up
    ours, t_ours = timed(mcq_predictions, model, tok, items, 16)
    base, t_base = timed(per_option, model, tok, items)
    result = {"questions": len(items), "ours_qps": len(items) / t_ours, "baseline_qps": len(items) / t_base,
              "ratio": t_base / t_ours, "identical_answers": ours == base}
    print(f"MCQ eval: {len(items)} questions; letter logits batched {result['ours_qps']:.1f} q/s, "
          f"one pass per option {result['baseline_qps']:.1f} q/s -> {result['ratio']:.2f}x; "
          f"identical answers: {result['identical_answers']}")
    from forgetlab.data.unlearn import read_facts
    from forgetlab.evaluate import mcq_option_logprobs

    facts = read_facts("builtin:animals").mcq() + read_facts("builtin:food").mcq()
    shared, t_shared = timed(mcq_option_logprobs, model, tok, facts)
    alone, t_alone = timed(option_rows, model, tok, facts)
    gap = max(abs(a - b) for x, y in zip(shared, alone, strict=True) for a, b in zip(x, y, strict=True))
    result |= {"option_ll_facts": len(facts), "option_ll_ratio": t_alone / t_shared, "option_ll_max_gap": gap}
    print(f"option log-likelihood: {len(facts)} facts; prompt cache shared by the options {t_shared:.2f} s, "
          f"one row per option {t_alone:.2f} s -> {t_alone / t_shared:.2f}x; largest difference {gap:.1e}")
    return result


if __name__ == "__main__":
    main()
