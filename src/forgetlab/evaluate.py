"""The only metric code that touches a model: MCQ accuracy, QA scores, losses.

MCQ accuracy reads the next-token logits of the option letters after the prompt: one forward pass per question,
batched; the unlearning scores also read each option's log-likelihood as a plain-text continuation.
QA scores come from greedy generation. The pure scoring lives in `metrics/`.
"""

from __future__ import annotations

import torch

from .batching import Encoded, collate, encode, fixed_batches, prompt_ids, to_device
from .config import EvalConfig, GeneralConfig
from .data.general import retention_examples
from .data.records import LETTERS, Example, MCQItem, Task, mcq_prompt, user
from .losses import nll, unwrap
from .metrics.qa import contains, exact_match, token_f1


def letter_ids(tok, n: int) -> list[int]:
    """Token id of each answer letter as the first token of an answer."""
    return [tok(LETTERS[i], add_special_tokens=False)["input_ids"][0] for i in range(n)]


def _by_length(seqs: list[list[int]], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def mcq_letter_probs(model, tok, items: list[MCQItem], batch_size: int = 16) -> list[list[float]]:
    """Per item, the softmax over its option letters of the next-token logits at the answer position."""
    lm = unwrap(model)
    device = next(model.parameters()).device
    prompts = [prompt_ids(tok, user(mcq_prompt(it))) for it in items]
    letters = letter_ids(tok, max((len(it.options) for it in items), default=0))
    probs: list[list[float]] = [[] for _ in items]
    for idx in _by_length(prompts, batch_size):
        batch = to_device(collate([Encoded(prompts[i], prompts[i]) for i in idx], tok.pad_token_id), device)
        hidden = lm.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        last = batch["attention_mask"].sum(1) - 1
        logits = lm.get_output_embeddings()(hidden[torch.arange(len(idx), device=device), last]).float()  # (b, vocab)
        for row, i in enumerate(idx):
            probs[i] = logits[row, letters[: len(items[i].options)]].softmax(-1).tolist()
    return probs


def mcq_predictions(model, tok, items: list[MCQItem], batch_size: int = 16) -> list[int]:
    """Predicted option index per item: argmax of the letter logits at the answer position."""
    return picks(mcq_letter_probs(model, tok, items, batch_size))


def picks(probs: list[list[float]]) -> list[int]:
    """The option each row of scores picks (the first of equal best)."""
    return [max(range(len(p)), key=p.__getitem__) for p in probs]


@torch.no_grad()
def mcq_option_logprobs(model, tok, items: list[MCQItem], batch_size: int = 16, shots: int = 0) -> list[list[float]]:
    """Per item, the summed log-probability of each option as the continuation of "Question: q\nAnswer:" (plain
    text, no chat template): how lm-eval-harness scores multiple choice, and what a small model gets right even
    where its letter choice is at chance. The prompt runs once per item and its key/value cache is shared by the
    item's options (the same numbers as scoring each prompt + option row alone, to float rounding; about twice as
    fast, since the prompt is most of each row). `shots`: each prompt follows that many other items of the list,
    solved ("Question: q\nAnswer: a", the next ones in turn), as a k-shot prompt."""
    import inspect

    from .data.unlearn import qa_prompt

    lm = unwrap(model)
    decoder, head = lm.get_decoder(), lm.get_output_embeddings()
    device = next(model.parameters()).device
    pad = tok.pad_token_id
    cache_key = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
    def prompt(i: int) -> str:
        solved = [items[(i + j) % len(items)] for j in range(1, min(shots, len(items) - 1) + 1)]
        return "".join(f"{qa_prompt(o.question)} {o.options[o.answer]}\n\n" for o in solved) + qa_prompt(items[i].question)

    prompts = [tok(prompt(i), add_special_tokens=False)["input_ids"] for i in range(len(items))]
    options = [[tok(" " + o, add_special_tokens=False)["input_ids"] for o in it.options] for it in items]
    out: list[list[float]] = [[] for _ in items]
    was_training = model.training
    model.eval()
    try:
        for idx in _by_length(prompts, batch_size):
            width = max(len(prompts[i]) for i in idx)
            ids = torch.tensor([prompts[i] + [pad] * (width - len(prompts[i])) for i in idx], device=device)
            mask = torch.tensor([[1] * len(prompts[i]) + [0] * (width - len(prompts[i])) for i in idx], device=device)
            first = decoder(input_ids=ids, attention_mask=mask, use_cache=True)
            lengths = mask.sum(1)
            last = head(first.last_hidden_state[torch.arange(len(idx), device=device), lengths - 1]).float()
            owner = [b for b, i in enumerate(idx) for _ in options[i]]
            flat = [o for i in idx for o in options[i]]
            cont = max(len(o) for o in flat)
            sel = torch.tensor(owner, device=device)
            cache = getattr(first, "cache", None) or first.past_key_values
            cache.batch_select_indices(sel)  # each prompt's keys and values, once per option
            opt = torch.tensor([o + [pad] * (cont - len(o)) for o in flat], device=device)
            opt_mask = torch.tensor([[1] * len(o) + [0] * (cont - len(o)) for o in flat], device=device)
            positions = lengths[sel][:, None] + torch.arange(cont, device=device)[None]
            hidden = decoder(input_ids=opt, attention_mask=torch.cat([mask[sel], opt_mask], 1), position_ids=positions,
                             **{cache_key: cache}).last_hidden_state
            total = last.log_softmax(-1)[sel].gather(-1, opt[:, :1])[:, 0]
            if cont > 1:
                keep = opt_mask[:, 1:].bool()
                token = head(hidden[:, :-1][keep]).float().log_softmax(-1).gather(-1, opt[:, 1:][keep][:, None])[:, 0]
                rows = torch.arange(len(flat), device=device)[:, None].expand_as(keep)[keep]
                total = total.index_add(0, rows, token)
            for b, value in zip(owner, total.tolist(), strict=True):
                out[idx[b]].append(value)
    finally:
        model.train(was_training)
    return out


def mcq_accuracy(model, tok, items: list[MCQItem], batch_size: int = 16) -> float:
    """Share of items whose predicted letter is the answer (nan for no items)."""
    if not items:
        return float("nan")
    preds = mcq_predictions(model, tok, items, batch_size)
    return sum(p == it.answer for p, it in zip(preds, items, strict=False)) / len(items)


@torch.no_grad()
def generate_answers(model, tok, examples: list[Example], max_new_tokens: int = 16, batch_size: int = 16) -> list[str]:
    """Greedy answers, batched with left padding, tidied the way the server tidies them (a made-up next turn
    dropped; an answer cut by the token limit loses its unfinished last sentence; URLs and numbers kept whole)."""
    from .sessions.answers import tidy

    device = next(model.parameters()).device
    eos = eos_ids(model, tok)
    prompts = [prompt_ids(tok, ex.messages) for ex in examples]
    out = [""] * len(examples)
    for idx in _by_length(prompts, batch_size):
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(idx):
            ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]):] = 1
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        for row, i in enumerate(idx):
            new = gen[row, width:].tolist()
            truncated = len(new) >= max_new_tokens and not eos.intersection(new)
            out[i] = tidy(tok.decode(new, skip_special_tokens=True), truncated=truncated)
    return out


def eos_ids(model, tok) -> set[int]:
    """Every token id that ends an answer: the tokenizer's and the model's generation config's."""
    x = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    extra = [] if x is None else list(x) if isinstance(x, (list, tuple, set)) else [x]
    return {tok.eos_token_id, *extra} - {None}


def qa_scores(model, tok, examples: list[Example], max_new_tokens: int = 16, batch_size: int = 16) -> dict:
    """Greedy answers scored against the targets: n, mean normalised exact match, contains (the reference occurs in
    the answer: recall of a key fact) and token F1, and the answers themselves."""
    return answer_scores(generate_answers(model, tok, examples, max_new_tokens, batch_size), examples)


def general_score(model, tok, general: GeneralConfig, answer=None) -> float:
    """Share of the built-in general questions (data/general.py: "What is the capital of Japan?") whose greedy answer
    contains the reference: what the base model knew and a run should keep. One definition, one batch and one token
    budget (`general.max_new_tokens`) in every workflow, so the same model gets the same number wherever it is
    measured (sequential, sessions, unlearn, the online learner). `answer(examples, max_new_tokens)` replaces plain
    generation where something decides how each prompt is answered (the online learner's router). With
    `general.lm_eval`, the mean score of those lm-evaluation-harness tasks instead (lmeval.py)."""
    if general.lm_eval:  # lm-evaluation-harness on the model as it is (the router, if any, is not consulted)
        from .lmeval import lm_eval_scores

        scores = lm_eval_scores(model, tok, general.lm_eval, general.lm_eval_limit)
        return sum(scores.values()) / len(scores)
    examples = retention_examples()
    answers = answer(examples, general.max_new_tokens) if answer else \
        generate_answers(model, tok, examples, general.max_new_tokens, batch_size=64)
    return answer_scores(answers, examples)["contains"]


def qa_scores_of_sets(model, tok, sets: dict[str, list[Example]], max_new_tokens: int, batch_size: int = 64) -> dict:
    """qa_scores of several question sets answered in one generation pass ({"n": 0} for an empty set): greedy
    generation on the CPU costs about the same per step for 64 prompts as for 16, so one pass over all sets is
    several times faster than one pass per set."""
    everything = [ex for examples in sets.values() for ex in examples]
    answers = generate_answers(model, tok, everything, max_new_tokens, batch_size) if everything else []
    out, start = {}, 0
    for name, examples in sets.items():
        out[name] = answer_scores(answers[start:start + len(examples)], examples) if examples else {"n": 0}
        start += len(examples)
    return out


def answer_scores(answers: list[str], examples: list[Example]) -> dict:
    """n, exact, contains and f1 of `answers` to `examples` (see `qa_scores`), with the answers."""
    pairs = list(zip(answers, [ex.target for ex in examples], strict=True))
    n = max(1, len(pairs))
    return {"n": len(pairs), "exact": sum(exact_match(a, t) for a, t in pairs) / n,
            "contains": sum(contains(a, t) for a, t in pairs) / n, "f1": sum(token_f1(a, t) for a, t in pairs) / n,
            "answers": answers}


@torch.no_grad()
def mean_loss(model, batches: list[dict]) -> float:
    """Mean answer-token NLL over fixed batches (each batch weighted equally)."""
    device = next(model.parameters()).device
    return sum(float(nll(model, to_device(b, device))) for b in batches) / max(1, len(batches))


def evaluate_tasks(model, tok, tasks: list[Task], cfg: EvalConfig, items: bool = False) -> dict[str, dict]:
    """`evaluate_task` for every task, the MCQ items of all tasks and splits scored together: sorted by length and
    padded as one set, so a stage's evaluation runs as few batches as the items need, whatever task they are from."""
    pooled = [(t.name, split, mcq) for t in tasks for split, mcq in t.mcq.items() if mcq]
    probs = mcq_letter_probs(model, tok, [it for _, _, mcq in pooled for it in mcq], cfg.batch_size) if pooled else []
    scored, i = {}, 0
    for name, split, mcq in pooled:
        scored[(name, split)] = probs[i:i + len(mcq)]
        i += len(mcq)
    return {t.name: evaluate_task(model, tok, t, cfg, items, {s: scored.get((t.name, s), []) for s in t.mcq})
            for t in tasks}


def evaluate_task(model, tok, task: Task, cfg: EvalConfig, items: bool = False,
                  scored: dict[str, list] | None = None) -> dict[str, dict]:
    """Per split: `accuracy` (MCQ letter accuracy, or QA `contains` for tasks without MCQ items), plus QA
    exact/contains when `cfg.qa` is on or the task has only QA records. `items`: also each item's prediction
    ("items": the predicted letter or the greedy answer, whether it is right, and for MCQ the log-softmax of the
    option letters' logits — what the accuracy reads). `scored`: the MCQ letter probabilities per split, computed
    already (`evaluate_tasks`)."""
    import math

    result: dict[str, dict] = {}
    for split, mcq in task.mcq.items():
        if scored is not None:
            probs = scored[split]
        else:
            probs = mcq_letter_probs(model, tok, mcq, cfg.batch_size) if mcq else []
        picked = picks(probs)
        right = [p == it.answer for p, it in zip(picked, mcq, strict=True)]
        result[split] = {"accuracy": sum(right) / len(right) if right else float("nan"), "n": len(mcq),
                         "chance": sum(1 / len(it.options) for it in mcq) / max(1, len(mcq))}
        if items:
            result[split]["items"] = [{"answer": LETTERS[k], "correct": ok,
                                       "logprobs": [round(math.log(max(x, 1e-30)), 4) for x in p]}
                                      for k, ok, p in zip(picked, right, probs, strict=True)]
    if cfg.qa or not task.mcq:
        for split, examples in task.qa.items():
            scores = qa_scores(model, tok, examples, cfg.max_new_tokens, cfg.batch_size)
            row = result.setdefault(split, {"n": len(examples), "chance": 0.0})
            row.update({"qa_exact": scores["exact"], "qa_contains": scores["contains"]})
            row.setdefault("accuracy", scores["contains"])
            if items and not task.mcq:
                row["items"] = [{"answer": a, "correct": contains(a, ex.target), "logprobs": None}
                                for a, ex in zip(scores.get("answers", []), examples, strict=True)]
    return result


def task_batches(tok, task: Task, batch_size: int, max_length: int, limit: int | None = None) -> list[dict]:
    """Fixed batches of a task's training records: the loss the landscape and forgetting estimate refer to."""
    return fixed_batches([encode(tok, ex, max_length) for ex in task.train], batch_size, tok.pad_token_id, limit)


def argmax_tokens(model, tok, rows: list[Encoded], batch_size: int = 32) -> list[list[int]]:
    """Per row, the model's argmax next token at each answer position (teacher-forced, one batched pass): what
    token accuracy compares with the labels and edit locality compares before and after."""
    from .forward import by_row, per_row
    from .losses import answer_logits

    def argmax(m, batch, chunk):
        logits, _ = answer_logits(m, batch)
        return [r.tolist() for r in by_row(logits.argmax(-1), chunk)]

    return per_row(model, rows, tok.pad_token_id, argmax, batch_size, by_length=True) if rows else []


def answer_nlls(model, tok, rows: list[Encoded], batch_size: int = 16) -> list[float]:
    """Per row, the mean negative log-likelihood per answer token (teacher-forced, one batched pass): TOFU's
    length-normalised answer probability is exp(−this), and the truth ratio compares it across answers."""
    from .forward import per_row
    from .losses import answer_logprobs

    def mean_nll(m, batch, chunk):
        total, n = answer_logprobs(m, batch)
        return (-total / n.clamp(min=1)).tolist()

    return per_row(model, rows, tok.pad_token_id, mean_nll, batch_size, by_length=True) if rows else []


def qa_rows(tok, pairs: list[tuple[str, str]], max_length: int = 256) -> list[Encoded]:
    """(question, answer) pairs encoded as chat turns, the loss on the answer and its end-of-turn token: the form
    TOFU's probability, truth ratio and min-k% read for a chat model."""
    return [encode(tok, Example(user(q), a), max_length) for q, a in pairs]


def token_statistics(model, tok, rows: list[Encoded], drop_last: bool = False, batch_size: int = 8) -> list[dict]:
    """Per row, at each answer position (teacher-forced): the target token's log-probability ("logprob"), the mean
    and variance of the log-probability under the model's next-token distribution ("mean", "var": min-k%++), and
    the argmax token against the target ("predicted", "target": exact memorisation, extraction strength).
    `drop_last`: leave out each row's last target (a QA row's end-of-turn token, as open-unlearning does)."""
    from .forward import by_row, per_row
    from .losses import answer_logits

    def stats(m, batch, chunk):
        logits, targets = answer_logits(m, batch)
        logp = logits.float().log_softmax(-1)
        plogp = logp.exp().mul_(logp)  # p log p, in place: one (tokens × vocab) temporary fewer
        mean = plogp.sum(-1)
        var = plogp.mul_(logp).sum(-1) - mean * mean
        columns = (logp.gather(-1, targets[:, None])[:, 0], mean, var, logits.argmax(-1), targets)
        out = []
        for values in zip(*(by_row(c, chunk) for c in columns), strict=True):
            lists = [v.tolist()[:-1] if drop_last else v.tolist() for v in values]
            out.append(dict(zip(("logprob", "mean", "var", "predicted", "target"), lists, strict=True)))
        return out

    return per_row(model, rows, tok.pad_token_id, stats, batch_size, by_length=True) if rows else []


def answer_labels(rows: list[Encoded]) -> list[list[int]]:
    """The answer tokens of each row, in the order `argmax_tokens` predicts them."""
    from .batching import IGNORE

    return [[t for t in r.labels[1:] if t != IGNORE] for r in rows]
