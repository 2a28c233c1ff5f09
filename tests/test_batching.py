"""Encoding with answer-only labels, length-grouped batches, padding."""

from forgetlab.batching import IGNORE, collate, encode, length_grouped, prompt_ids
from forgetlab.data.records import Example, user


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
