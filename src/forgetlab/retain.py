"""What keeps a model from forgetting while it learns something new, shared by the sequential strategies
(`methods/replay.py`, `methods/kl.py`) and the sessions (`sessions/loss.py`):

- replay: earlier records added to a batch so that they make up a share of it (`old_count`, `with_rows`);
- anchors: built-in everyday prompts answered once by a reference model, whose next-token distributions at those
  answers the model is kept close to (`Anchors`, λ·KL(p_ref || p));
- reference logits of any batch from the model with some adapter switched off (`reference_logits`), or of a fixed
  set of rows computed once and kept as their top-k tokens (`TopKReference`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .batching import Encoded, collate, encode, pack, to_device, unbatch
from .data.general import anchor_messages
from .data.records import Example
from .forward import by_row, per_row
from .losses import answer_logits, kl_to_reference, kl_to_top_k, packs, top_k_reference


def old_count(n_new: int, share: float) -> int:
    """How many old examples to add to `n_new` new ones so that old examples make up `share` of the batch.

    >>> old_count(8, 0.2), old_count(8, 0.5), old_count(8, 0.0)
    (2, 8, 0)
    """
    return round(n_new * share / (1 - share)) if share > 0 else 0


def with_rows(batch: dict[str, torch.Tensor], rows: list[Encoded], pad_id: int, model=None) -> dict[str, torch.Tensor]:
    """The batch with `rows` appended, on the batch's device: re-padded, or — given the `model` it is for, when that
    model reads packed rows (`losses.packs`) — packed into one row with no padding (the same logits, a third less
    compute on the online learner's mix of short and long rows); the batch itself when rows is empty."""
    if not rows:
        return batch
    both = unbatch(batch) + list(rows)
    joined = pack(both) if model is not None and packs(model, pad_id) else collate(both, pad_id)
    return to_device(joined, batch["input_ids"].device)


@contextlib.contextmanager
def adapters_off(model, names: list[str] | None = None):
    """Run `model` without LoRA adapters `names` (all of them when None), in eval mode and without gradients.

    Scaling an adapter to zero removes exactly its contribution, so with the newest adapter off a model of stacked
    (or merged) sessions answers as the previous session did; nothing is copied.
    """
    from .model import lora_layers

    was_training = model.training
    saved = []
    for layer in lora_layers(model):
        for name in list(layer.scaling) if names is None else names:
            if name in layer.scaling:
                saved.append((layer, name, layer.scaling[name]))
                layer.scaling[name] = 0.0
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for layer, name, value in saved:
            layer.scaling[name] = value
        model.train(was_training)


def reference_logits(model, batch: dict[str, torch.Tensor], names: list[str] | None = None) -> torch.Tensor:
    """Logits at the batch's answer tokens, (n_answer_tokens, vocab), with adapters `names` switched off."""
    with adapters_off(model, names):
        return answer_logits(model, batch)[0]


@dataclass
class TopKReference:
    """A reference model's next-token distributions at the answer tokens of fixed rows, computed once and kept as
    their top-k tokens (see `losses.kl_to_top_k`): rows that come round many times (replay) cost one forward pass
    each instead of one per visit, and memory grows with k, not with the vocabulary."""

    logp: list[torch.Tensor]  # per row: (n_answer_tokens, k) float32 on the CPU
    ids: list[torch.Tensor]  # per row: (n_answer_tokens, k) int64 on the CPU

    @classmethod
    def build(cls, model, rows: list[Encoded], names: list[str] | None, pad_id: int, k: int = 64,
              batch_size: int = 16) -> TopKReference:
        """The distributions of `model` with adapters `names` off (all: the base model) at `rows`' answers."""
        def top(m, batch, chunk):
            values, ids = top_k_reference(reference_logits(m, batch, names), k)
            return [(v.cpu(), i.cpu()) for v, i in zip(by_row(values, chunk), by_row(ids, chunk), strict=True)]

        pairs = per_row(model, rows, pad_id, top, batch_size)
        return cls([v for v, _ in pairs], [i for _, i in pairs])

    def kl(self, logits: torch.Tensor, indices: list[int]) -> torch.Tensor:
        """Mean KL(p_ref || p) over the answer tokens of rows `indices`, whose logits (in that order) are `logits`."""
        device = logits.device
        return kl_to_top_k(logits, torch.cat([self.logp[i] for i in indices]).to(device),
                           torch.cat([self.ids[i] for i in indices]).to(device))


@dataclass
class Anchors:
    """Anchor prompts with a reference model's answers (encoded) and its logits at those answers' tokens."""

    examples: list[Encoded]
    refs: list[torch.Tensor]  # per anchor: (n_answer_tokens, vocab), float32 on the CPU

    def indices(self, number: int, per_batch: int) -> list[int]:
        """The anchors used at batch `number`: `per_batch` of them, rotating through the set."""
        n = len(self.examples)
        return [(number * per_batch + i) % n for i in range(min(per_batch, n))]

    def kl(self, model, number: int, per_batch: int, pad_id: int) -> torch.Tensor:
        """Mean KL(p_ref || p_model) over the answer tokens of the anchors of batch `number`."""
        idx = self.indices(number, per_batch)
        device = next(model.parameters()).device
        batch = to_device(collate([self.examples[i] for i in idx], pad_id), device)
        ref = torch.cat([self.refs[i] for i in idx]).to(device)
        return kl_to_reference(answer_logits(model, batch)[0], ref)


def anchor_examples(answering_model, tok, max_length: int, names: list[str] | None = None,
                    questions: bool = False) -> list[Encoded]:
    """The built-in anchor prompts (`anchor_messages(questions)`), each with `answering_model`'s greedy answer
    (adapters `names` off), encoded."""
    from .evaluate import generate_answers

    prompts = [Example(m, "") for m in anchor_messages(questions)]
    with adapters_off(answering_model, names):
        answers = generate_answers(answering_model, tok, prompts, max_new_tokens=16)
    return [encode(tok, Example(p.messages, a or "OK"), max_length) for p, a in zip(prompts, answers, strict=True)]


def build_anchors(model, tok, max_length: int, names: list[str] | None = None, questions: bool = False) -> Anchors:
    """Anchors answered by `model` with adapters `names` off (all: the base model), and its logits."""
    examples = anchor_examples(model, tok, max_length, names, questions)
    refs = per_row(model, examples, tok.pad_token_id, lambda m, b, _: [reference_logits(m, b, names).float().cpu()],
                   batch_size=1)  # one anchor at a time: its reference logits without any padding
    return Anchors(examples, refs)
