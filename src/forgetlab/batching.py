"""Turn records into token ids and padded batches.

The chat template is used where the tokenizer has one. The loss is taken on answer tokens only: prompt tokens
get label -100. Batches are length-grouped (examples of similar length together) so little compute is spent on
padding, and padded only to the longest example in the batch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .data.records import Example

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]


def prompt_ids(tok, messages) -> list[int]:
    """Token ids of the prompt up to where the assistant's answer starts."""
    if tok.chat_template:
        out = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        ids = out["input_ids"] if hasattr(out, "keys") else out
        return list(ids)
    text = "\n".join(m["content"] for m in messages) + "\nAnswer: "
    return tok(text, add_special_tokens=True)["input_ids"]


def answer_ids(tok, target: str) -> list[int]:
    """Token ids of the answer followed by the end-of-turn token."""
    return tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def key_positions(tok, answer: str, key: str) -> list[int]:
    """Indexes of the tokens of `answer` that spell `key` (case ignored; [] when the answer does not hold it)."""
    at = answer.lower().find(key.lower())
    if at < 0:
        return []
    offsets = tok(answer, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [i for i, (a, b) in enumerate(offsets) if a < at + len(key) and b > at]


def encode(tok, example: Example, max_length: int) -> Encoded:
    """Prompt + answer ids, labels masked on the prompt; over-long records lose prompt tokens from the left."""
    p, a = prompt_ids(tok, example.messages), answer_ids(tok, example.target)
    a = a[:max_length - 1]
    p = p[-(max_length - len(a)):]
    return Encoded(p + a, [IGNORE] * len(p) + a)


def encode_continuation(tok, prompt: str, continuation: str, max_length: int) -> Encoded:
    """Plain text (no chat template): `prompt` then `continuation`, the loss on the continuation only. The form the
    unlearning data and the per-option MCQ log-likelihood use ("Question: ...\nAnswer:" + " the answer")."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    a = tok(continuation, add_special_tokens=False)["input_ids"][:max_length - 1]
    p = p[-(max_length - len(a)):]
    return Encoded(p + a, [IGNORE] * len(p) + a)


def encode_text(tok, text: str, max_length: int) -> Encoded:
    """Plain text, the loss on every token after the first (language modelling on a corpus sentence)."""
    ids = tok(text, add_special_tokens=False)["input_ids"][:max_length]
    return Encoded(ids, [IGNORE] + ids[1:])


def answer_positions(rows: list[Encoded]) -> int:
    """Number of answer-token positions the loss covers in these rows (labels shifted by one)."""
    return sum(sum(1 for x in r.labels[1:] if x != IGNORE) for r in rows)


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest item: input_ids, attention_mask, labels, each (batch, seq)."""
    width = max(len(it.input_ids) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for i, it in enumerate(items):
        n = len(it.input_ids)
        ids[i, :n] = torch.tensor(it.input_ids)
        labels[i, :n] = torch.tensor(it.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack(items: list[Encoded]) -> dict[str, torch.Tensor]:
    """All items in one row, one after another, no padding: input_ids, position_ids (from 0 again at each item's
    start) and labels, each (1, total). A model given position_ids and no attention mask reads each restart as a
    new sequence and attends within it only (transformers' packed-sequence masks); `losses.packs` checks that a
    model does. Each item's first label is dropped, as `collate`'s shifted labels drop it, so no item is trained to
    predict the next one's first token."""
    ids = [t for it in items for t in it.input_ids]
    labels = [x for it in items for x in [IGNORE, *it.labels[1:]]]
    positions = [p for it in items for p in range(len(it.input_ids))]
    return {"input_ids": torch.tensor([ids]), "position_ids": torch.tensor([positions]),
            "labels": torch.tensor([labels])}


def length_grouped(lengths: list[int], batch_size: int, seed: int, group: int = 16) -> list[list[int]]:
    """Index batches: shuffle, sort within groups of `group` batches by length, then shuffle the batch order.

    Same seed, same batches. Little padding, and still a different mix every epoch.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * group
    batches = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start:start + span], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def fixed_batches(encoded: list[Encoded], batch_size: int, pad_id: int, limit: int | None = None) -> list[dict]:
    """Deterministic, unshuffled batches (for evaluation losses and the Hessian)."""
    batches = [collate(encoded[i:i + batch_size], pad_id) for i in range(0, len(encoded), batch_size)]
    return batches[:limit] if limit else batches


def to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def unbatch(batch: dict[str, torch.Tensor]) -> list[Encoded]:
    """The inverse of `collate` (padding dropped): one Encoded per row."""
    out = []
    for ids, labels, mask in zip(batch["input_ids"].tolist(), batch["labels"].tolist(),
                                 batch["attention_mask"].tolist(), strict=False):
        n = sum(mask)
        out.append(Encoded(ids[:n], labels[:n]))
    return out
