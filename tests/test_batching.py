"""Encoding with answer-only labels, length-grouped batches, padding."""

import torch

from forgetlab.batching import (
    IGNORE,
    Encoded,
    answer_positions,
    collate,
    encode,
    encode_continuation,
    length_grouped,
    pack,
    prompt_ids,
)
from forgetlab.data.records import Example, user
from forgetlab.losses import answer_logits, packs
from forgetlab.retain import with_rows

from .conftest import tiny_llama


def test_labels_cover_the_answer_only(tokenizer):
    ex = Example(user("Where does Kara live?"), "Tarnby")
    enc = encode(tokenizer, ex, 512)
    n_prompt = len(prompt_ids(tokenizer, ex.messages))
    assert enc.input_ids[:n_prompt] == prompt_ids(tokenizer, ex.messages)
    assert all(lab == IGNORE for lab in enc.labels[:n_prompt])
    answer = [t for t in enc.labels if t != IGNORE]
    assert tokenizer.decode(answer) == "Tarnby" + tokenizer.eos_token
    assert "<|im_start|>assistant\n" in tokenizer.decode(enc.input_ids[:n_prompt])


def test_truncation_keeps_the_answer(tokenizer):
    ex = Example(user("word " * 300), "Tarnby")
    enc = encode(tokenizer, ex, 64)
    assert len(enc.input_ids) == 64
    assert tokenizer.decode([t for t in enc.labels if t != IGNORE]).startswith("Tarnby")


def test_collate_pads_right_with_mask(tokenizer):
    a = encode(tokenizer, Example(user("a"), "b"), 512)
    b = encode(tokenizer, Example(user("a much longer question here"), "b"), 512)
    batch = collate([a, b], tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, len(b.input_ids))
    assert int(batch["attention_mask"][0].sum()) == len(a.input_ids)
    assert (batch["labels"][0, len(a.input_ids):] == IGNORE).all()


def test_length_grouped_is_deterministic_and_complete():
    lengths = [5, 50, 7, 48, 6, 49, 8, 51] * 4
    a = length_grouped(lengths, 4, seed=3)
    assert a == length_grouped(lengths, 4, seed=3)
    assert a != length_grouped(lengths, 4, seed=4)
    assert sorted(i for b in a for i in b) == list(range(len(lengths)))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in a)
    assert padded < 1.2 * sum(lengths), "grouping by length keeps padding small"


def _rows(tokenizer):
    return [encode(tokenizer, Example(user("Where does Kara live?"), "Tarnby"), 512),
            encode_continuation(tokenizer, "Kara lives in", " Tarnby, by the sea", 512),
            Encoded([5, 6, 7], [5, 6, 7])]  # labelled from its first token: that label is never trained


def test_packed_rows_give_the_padded_logits_and_gradients(tokenizer, tiny):
    rows = _rows(tokenizer)
    packed = pack(rows)
    assert packed["input_ids"].shape == (1, sum(len(r.input_ids) for r in rows))
    assert packed["position_ids"][0].tolist() == [p for r in rows for p in range(len(r.input_ids))]
    padded = collate(rows, tokenizer.pad_token_id)
    assert answer_positions(rows) == int((packed["labels"][:, 1:] != IGNORE).sum())
    grads = []
    for batch in (padded, packed):
        tiny.zero_grad()
        logits, targets = answer_logits(tiny, batch)
        torch.nn.functional.cross_entropy(logits, targets).backward()
        grads.append((logits.detach(), targets, tiny.model.layers[0].self_attn.q_proj.weight.grad.clone()))
    (a, ta, ga), (b, tb, gb) = grads
    assert torch.equal(ta, tb)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(ga, gb, atol=1e-6)
    assert packs(tiny, tokenizer.pad_token_id)
    joined = with_rows(collate(rows[:1], tokenizer.pad_token_id), rows[1:], tokenizer.pad_token_id, tiny)
    assert "position_ids" in joined and torch.equal(joined["input_ids"], packed["input_ids"])


def test_a_model_that_reads_no_position_restarts_gets_padded_rows(tokenizer):
    from transformers import LlamaForCausalLM

    class Blind(LlamaForCausalLM):  # drops position_ids: a packed row would be one long sequence to it
        def get_decoder(self):
            inner = super().get_decoder()
            return lambda **kw: inner(**{k: v for k, v in kw.items() if k != "position_ids"})

    model = Blind(tiny_llama(len(tokenizer)).config).eval()
    rows = _rows(tokenizer)
    assert not packs(model, tokenizer.pad_token_id)
    joined = with_rows(collate(rows[:1], tokenizer.pad_token_id), rows[1:], tokenizer.pad_token_id, model)
    assert "attention_mask" in joined and joined["input_ids"].shape[0] == len(rows)
