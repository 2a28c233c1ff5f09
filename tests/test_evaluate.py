"""Evaluation: batched MCQ and QA give the same answers as one-at-a-time; accuracy counts correctly."""

import torch

from forgetlab.batching import encode, fixed_batches, prompt_ids
from forgetlab.config import EvalConfig
from forgetlab.data import load_task
from forgetlab.data.records import LETTERS, MCQItem, mcq_prompt, user
from forgetlab.evaluate import (
    evaluate_task,
    evaluate_tasks,
    generate_answers,
    letter_ids,
    mcq_accuracy,
    mcq_predictions,
    mean_loss,
)

from .conftest import FEW_FACTS


def test_batched_mcq_equals_single_and_full_forward(tokenizer, tiny):
    items = load_task("facts:people", FEW_FACTS).mcq["held_out"]
    batched = mcq_predictions(tiny, tokenizer, items, batch_size=4)
    single = [mcq_predictions(tiny, tokenizer, [it], batch_size=1)[0] for it in items]
    assert batched == single
    # Reference: the plain model's full forward, last-position logits of the letters.
    letters = letter_ids(tokenizer, 4)
    for it, pred in zip(items, batched, strict=False):
        ids = torch.tensor([prompt_ids(tokenizer, user(mcq_prompt(it)))])
        with torch.no_grad():
            logits = tiny(ids).logits[0, -1]
        assert int(logits[letters].argmax()) == pred


def test_letters_are_single_tokens(tokenizer):
    ids = letter_ids(tokenizer, 4)
    assert [tokenizer.decode([i]) for i in ids] == list(LETTERS[:4])


def test_accuracy_counts_answers(tokenizer, tiny):
    items = load_task("facts:people", FEW_FACTS).mcq["seen"]
    preds = mcq_predictions(tiny, tokenizer, items)
    # Re-key every item so its answer is the predicted option: accuracy 1; shift by one: accuracy 0.
    right = [MCQItem(it.question, it.options, p) for it, p in zip(items, preds, strict=False)]
    wrong = [MCQItem(it.question, it.options, (p + 1) % 4) for it, p in zip(items, preds, strict=False)]
    assert mcq_accuracy(tiny, tokenizer, right) == 1.0
    assert mcq_accuracy(tiny, tokenizer, wrong) == 0.0


def test_batched_generation_equals_single(tokenizer, tiny):
    examples = load_task("facts:people", FEW_FACTS).qa["held_out"][:4]
    batched = generate_answers(tiny, tokenizer, examples, max_new_tokens=5, batch_size=4)
    single = [generate_answers(tiny, tokenizer, [ex], max_new_tokens=5, batch_size=1)[0] for ex in examples]
    assert batched == single


def test_question_sets_scored_in_one_pass_score_as_each_alone(tokenizer, tiny):
    from forgetlab.evaluate import qa_scores, qa_scores_of_sets

    task = load_task("facts:people", FEW_FACTS)
    questions = task.qa["held_out"]
    sets = {"a": questions[:2], "empty": [], "b": questions[2:]}
    together = qa_scores_of_sets(tiny, tokenizer, sets, max_new_tokens=5)
    assert list(together) == ["a", "empty", "b"] and together["empty"] == {"n": 0}
    for name in ("a", "b"):
        assert together[name] == qa_scores(tiny, tokenizer, sets[name], max_new_tokens=5)
    assert together["b"]["n"] == len(questions) - 2 >= 2 and len(together["b"]["answers"]) == together["b"]["n"]


def test_evaluate_task_reports_splits_and_chance(tokenizer, tiny):
    task = load_task("facts:people", FEW_FACTS)
    result = evaluate_task(tiny, tokenizer, task, EvalConfig(qa=True, max_new_tokens=4))
    assert set(result) == {"seen", "held_out"}
    assert result["seen"]["chance"] == 0.25 and result["seen"]["n"] == 12
    assert 0.0 <= result["held_out"]["qa_contains"] <= 1.0


def test_tasks_scored_together_score_as_each_task_alone(tokenizer, tiny):
    tasks = [load_task(f"facts:{d}", FEW_FACTS) for d in ("people", "elements")]
    together = evaluate_tasks(tiny, tokenizer, tasks, EvalConfig(batch_size=5), items=True)
    for t in tasks:
        alone = evaluate_task(tiny, tokenizer, t, EvalConfig(batch_size=5), items=True)
        assert together[t.name].keys() == alone.keys()
        for split, row in alone.items():
            assert {k: v for k, v in together[t.name][split].items() if k != "items"} == \
                {k: v for k, v in row.items() if k != "items"}
            got, want = together[t.name][split]["items"], row["items"]
            assert [g["answer"] for g in got] == [w["answer"] for w in want]
            assert all(abs(a - b) < 1e-3 for g, w in zip(got, want, strict=True)
                       for a, b in zip(g["logprobs"], w["logprobs"], strict=True))


def test_mean_loss_matches_model_loss(tokenizer, tiny):
    task = load_task("facts:people", FEW_FACTS)
    enc = [encode(tokenizer, ex, 128) for ex in task.train[:1]]
    batch = fixed_batches(enc, 1, tokenizer.pad_token_id)[0]
    with torch.no_grad():
        expected = float(tiny(input_ids=batch["input_ids"], labels=batch["labels"]).loss)
    assert abs(mean_loss(tiny, [batch]) - expected) < 1e-5
