"""Cached outputs of the frozen reference (the model before the first unlearning step): computed once, looked up
by a row's token ids. This is how NPO and RMU compare against the original model without a second copy of it."""

from __future__ import annotations

import torch

from ..batching import unbatch
from ..forward import per_row
from ..losses import answer_logprobs


def cache_logprobs(model, rows, ctx, batch_size: int = 16) -> dict[tuple[int, ...], float]:
    """{row ids: log π_ref(answer | prompt)} for each row."""
    values = per_row(model, rows, ctx.tokenizer.pad_token_id, lambda m, b, _: answer_logprobs(m, b)[0].tolist(),
                     batch_size)
    return {tuple(r.input_ids): float(v) for r, v in zip(rows, values, strict=True)}


def row_keys(batch: dict[str, torch.Tensor]) -> list[tuple[int, ...]]:
    """A hashable key per row of a batch (its token ids): how cached reference values are looked up."""
    return [tuple(r.input_ids) for r in unbatch(batch)]


class _Stop(Exception):
    pass


def layer_hidden(model, batch: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
    """The output hidden states of decoder layer `layer` (0-based), (batch, seq, dim); the forward pass stops
    there, so the layers above it and the output projection cost nothing."""
    from ..losses import unwrap

    layers = unwrap(model).get_decoder().layers
    captured = {}

    def hook(module, args, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output
        raise _Stop

    handle = layers[layer].register_forward_hook(hook)
    try:
        unwrap(model).get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured["h"]


def cache_hidden(model, rows, ctx, layer: int, batch_size: int = 16) -> dict[tuple[int, ...], torch.Tensor]:
    """{row ids: the frozen model's layer-`layer` hidden states on the row, (len, dim)}."""
    def hidden(m, batch, chunk):
        h = layer_hidden(m, batch, layer)
        return [h[i, :len(r.input_ids)].detach().clone() for i, r in enumerate(chunk)]

    values = per_row(model, rows, ctx.tokenizer.pad_token_id, hidden, batch_size)
    return {tuple(r.input_ids): v for r, v in zip(rows, values, strict=True)}
