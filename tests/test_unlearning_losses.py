"""The unlearning objectives' maths (NPO, SimNPO, the sequence log-likelihood they compare, RMU's distances)
against hand-computed values; the methods that use them come with the `unlearn` command."""

from __future__ import annotations

import torch


def test_unlearning_losses_by_hand(tiny, tokenizer):
    import math

    from forgetlab.batching import collate, encode
    from forgetlab.data.records import Example, user
    from forgetlab.losses import answer_logprobs, masked_mse, nll, npo_loss, simnpo_loss

    # NPO at the reference is (2/β)·log 2 whatever the likelihood; below the reference it falls
    logp = torch.tensor([-3.0, -7.5])
    assert math.isclose(float(npo_loss(logp, logp, 0.1)), 20 * math.log(2), rel_tol=1e-6)
    assert float(npo_loss(logp - 5, logp, 0.1)) < 20 * math.log(2)
    # SimNPO by hand: −(2/β)·log σ(−(β/|y|)·log π − γ)
    got = float(simnpo_loss(torch.tensor([-6.0]), torch.tensor([3]), beta=2.0, gamma=0.5))
    assert math.isclose(got, -(2 / 2.0) * math.log(1 / (1 + math.exp(-(-(2.0 / 3) * -6.0 - 0.5)))), rel_tol=1e-6)
    # the sequence log-likelihood sums what the token NLL averages (two rows of different lengths, padded)
    rows = [encode(tokenizer, Example(user("Hi"), "Hello there."), 64), encode(tokenizer, Example(user("Q?"), "A."), 64)]
    batch = collate(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        lp, n = answer_logprobs(tiny, batch)
        one = [float(nll(tiny, collate([r], tokenizer.pad_token_id))) for r in rows]
    assert n.tolist() == [sum(1 for x in r.labels[1:] if x != -100) for r in rows]
    assert all(math.isclose(-float(lp[i]) / int(n[i]), one[i], rel_tol=1e-4) for i in range(2))
    # masked MSE: zero at the control vector on real tokens, padding ignored
    h = torch.randn(2, 3, 4)
    c = torch.full((4,), 6.5)
    h[0, :2] = c
    h[1, :1] = c
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert float(masked_mse(h, c, mask)) == 0.0 and float(masked_mse(h, h + 2, mask)) == 4.0


def test_chat_keys_label_the_answer_in_the_models_own_chat_answer_and_push_it_down(tiny, tokenizer, monkeypatch):
    """`method.chat_keys`: a row per question whose chat answer holds the target, labelled only at the tokens that
    spell it; the term is −log(1 − p) at those tokens (checked against a plain forward) added to the inner loss."""
    import math

    from forgetlab.batching import IGNORE, collate
    from forgetlab.config import TrainConfig
    from forgetlab.data.records import Example, user
    from forgetlab.unlearning import UnlearnContext
    from forgetlab.unlearning import chat as chat_keys

    answers = ["I think it is Paris, of course.", "No idea.", "It is paris."]
    monkeypatch.setattr(chat_keys, "generate_answers", lambda *a, **k: answers)
    questions = [Example(user("Capital of France?"), "Paris"), Example(user("Capital of Peru?"), "Lima"),
                 Example(user("And again?"), "Paris")]
    rows = chat_keys.key_rows(tiny, tokenizer, questions, 16, 128)
    assert len(rows) == 2  # "No idea." does not hold "Lima": no row
    for row in rows:
        labelled = [t for t in row.labels if t != IGNORE]
        assert tokenizer.decode(labelled).strip().lower() == "paris"
        assert row.input_ids[-1] == tokenizer.eos_token_id  # the whole answer is there, only the key is labelled

    batch = collate(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        got = float(chat_keys.unlikelihood(tiny, batch))
        logits = tiny(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    terms = []
    for b in range(len(rows)):
        for t in range(1, batch["input_ids"].shape[1]):
            label = int(batch["labels"][b, t])
            if label != IGNORE:
                p = float(logits[b, t - 1].softmax(-1)[label])
                terms.append(-math.log(1 - p))
    assert math.isclose(got, sum(terms) / len(terms), rel_tol=1e-4)

    class Inner:
        def loss(self, model, batch, ctx):
            return torch.tensor(2.0)

        def rows(self, forget, ctx):
            return "the inner method's rows"

    method = chat_keys.ChatKeys(Inner(), 0.5, rows, batch_size=8, pad_id=tokenizer.pad_token_id)
    assert method.rows(None, None) == "the inner method's rows"
    ctx = UnlearnContext(tokenizer, TrainConfig())
    with torch.no_grad():
        assert math.isclose(float(method.loss(tiny, batch, ctx)), 2.0 + 0.5 * got, rel_tol=1e-4)


def test_chat_retain_keeps_the_models_own_chat_answers_to_the_retain_questions(tiny, tokenizer, monkeypatch):
    """`method.chat_retain`: a row per retain question with a non-empty own answer, every answer token labelled;
    the term is the weight times the token-mean NLL of those rows, added to the inner loss (and to the forget term)."""
    import math

    from forgetlab.batching import IGNORE, answer_ids, collate
    from forgetlab.config import TrainConfig
    from forgetlab.data.records import Example, user
    from forgetlab.losses import nll
    from forgetlab.unlearning import UnlearnContext, chat

    answers = ["Rome is the capital.", "  ", "It is blue."]
    monkeypatch.setattr(chat, "generate_answers", lambda *a, **k: answers)
    questions = [Example(user("Capital of Italy?"), "Rome"), Example(user("Why?"), "x"),
                 Example(user("Sky colour?"), "blue")]
    rows = chat.own_answer_rows(tiny, tokenizer, questions, 16, 128)
    assert len(rows) == 2  # the blank answer gives no row
    for row, said in zip(rows, ["Rome is the capital.", "It is blue."], strict=True):
        assert [t for t in row.labels if t != IGNORE] == answer_ids(tokenizer, said)  # its own words, all labelled

    class Inner:
        def loss(self, model, batch, ctx):
            return torch.tensor(1.5)

    batch = collate(rows, tokenizer.pad_token_id)
    ctx = UnlearnContext(tokenizer, TrainConfig())
    with torch.no_grad():
        want = 1.5 + 0.5 * float(chat.unlikelihood(tiny, batch)) + 0.25 * float(nll(tiny, batch))
        method = chat.ChatKeys(Inner(), 0.5, rows, batch_size=8, pad_id=tokenizer.pad_token_id, retain_weight=0.25,
                               retain_rows=rows)
        assert math.isclose(float(method.loss(tiny, batch, ctx)), want, rel_tol=1e-4)
        off = chat.ChatKeys(Inner(), 0.0, [], batch_size=8, pad_id=tokenizer.pad_token_id)
        assert float(off.loss(tiny, batch, ctx)) == 1.5

