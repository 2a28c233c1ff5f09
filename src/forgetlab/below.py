"""Hidden states below the trained layers, computed once per row.

With LoRA on the top share of the decoder layers only (`lora.top_layers` < 1), nothing below the first adapted layer
changes while the adapter trains: a row's hidden states where it enters that layer are the same at every step. The
online learner trains the same rows again and again — an edit's prompts for several steps, the rehearsed facts, the
anchor prompts — so `Below` computes each row's states there once, keeps them, and the training forward runs the
adapted layers only: the same logits and gradients for the cost of the top of the model.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .batching import IGNORE, Encoded, collate, pack


class _Reached(Exception):
    """Raised by the hook on the first trained layer: the pass that fills the cache stops there."""


def first_trained_layer(decoder) -> int:
    """Index of the lowest decoder layer with a trainable parameter (the layer count when none has one; 0 for a
    decoder that keeps no `layers` list, whose layers cannot be run apart)."""
    if not isinstance(getattr(decoder, "layers", None), nn.ModuleList):
        return 0
    for i, layer in enumerate(decoder.layers):
        if any(p.requires_grad for p in layer.parameters()):
            return i
    return len(decoder.layers)


def batch_rows(batch: dict[str, torch.Tensor]) -> list[list[int]]:
    """The token ids of each row of a padded (`collate`) or packed (`batching.pack`) batch, padding dropped."""
    if "position_ids" in batch:
        ids, pos = batch["input_ids"][0].tolist(), batch["position_ids"][0].tolist()
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(ids)]
        return [ids[a:b] for a, b in zip(starts, starts[1:], strict=False)]
    return [row[:n] for row, n in zip(batch["input_ids"].tolist(), batch["attention_mask"].sum(1).tolist(),
                                      strict=True)]


class Below:
    """Per-row hidden states at the input of the first trained decoder layer of one model (see the module
    docstring). Valid while the layers below keep their weights, which a trained adapter above them guarantees.
    `start` is 0 (the cache unused) when every layer trains or the model does not give the same logits from its
    top layers alone (checked once, on two short rows)."""

    def __init__(self, model, pad_id: int, max_rows: int = 4096):
        from .losses import unwrap

        self.decoder = unwrap(model).get_decoder()
        self.pad_id, self.max_rows = pad_id, max_rows
        self.rows: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self.start = first_trained_layer(self.decoder)
        if not 0 < self.start < len(getattr(self.decoder, "layers", ())) or not self._same_logits(model):
            self.start = 0
        self.rows.clear()

    def _same_logits(self, model) -> bool:
        from .losses import answer_logits

        rows = [Encoded([3, 4, 5, 6], [IGNORE, IGNORE, 5, 6]), Encoded([7, 8, 9], [IGNORE, 8, 9])]
        device = next(model.parameters()).device
        with torch.no_grad():
            for batch in (collate(rows, self.pad_id), pack(rows)):
                batch = {k: v.to(device) for k, v in batch.items()}
                try:
                    a, _ = answer_logits(model, batch)
                    b, _ = answer_logits(model, batch, self)
                except (TypeError, ValueError, RuntimeError):  # a decoder that takes no inputs_embeds
                    return False
                if a.shape != b.shape or not torch.allclose(a.float(), b.float(), atol=1e-4, rtol=1e-4):
                    return False
        return True

    def states(self, rows: list[list[int]]) -> list[torch.Tensor]:
        """Each row's hidden states, (len(row), hidden), computed in one batched pass for those not kept yet."""
        missing = list(dict.fromkeys(tuple(r) for r in rows if tuple(r) not in self.rows))
        if missing:
            self._fill(missing)
        out = []
        for r in rows:
            key = tuple(r)
            self.rows.move_to_end(key)
            out.append(self.rows[key])
        while len(self.rows) > self.max_rows:
            self.rows.popitem(last=False)
        return out

    @torch.no_grad()
    def _fill(self, rows: list[tuple[int, ...]]) -> None:
        seen = {}

        def grab(_module, args, kwargs):
            seen["h"] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            raise _Reached

        batch = collate([Encoded(list(r), list(r)) for r in rows], self.pad_id)
        device = next(self.decoder.parameters()).device
        hook = self.decoder.layers[self.start].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            self.decoder(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                         use_cache=False)
        except _Reached:
            pass
        finally:
            hook.remove()
        for r, h in zip(rows, seen["h"], strict=True):
            self.rows[r] = h[:len(r)].detach()

    def hidden(self, batch: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
        """The decoder's last hidden states for `batch` (padded or packed), from the kept states and the trained
        layers only; `kwargs` (attention_mask or position_ids) as the full decoder would take them."""
        states = self.states(batch_rows(batch))
        if "position_ids" in batch:
            embeds = torch.cat(states)[None]
        else:
            embeds = states[0].new_zeros((*batch["input_ids"].shape, states[0].shape[-1]))
            for i, h in enumerate(states):
                embeds[i, :len(h)] = h
        layers = self.decoder.layers
        self.decoder.layers = nn.ModuleList(list(layers)[self.start:])
        try:
            return self.decoder(inputs_embeds=embeds, **kwargs).last_hidden_state
        finally:
            self.decoder.layers = layers
