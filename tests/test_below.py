"""The kept states under the trained layers (below.py): the same logits and gradients as the whole forward."""

import torch

from forgetlab.batching import IGNORE, Encoded, collate, pack
from forgetlab.below import Below, batch_rows
from forgetlab.config import LoraSettings
from forgetlab.losses import answer_logits
from forgetlab.model import attach_lora

from .conftest import tiny_llama

ROWS = [Encoded([5, 6, 7, 8, 9], [IGNORE, IGNORE, IGNORE, 8, 9]), Encoded([11, 12, 13], [IGNORE, 12, 13]),
        Encoded([5, 6, 7, 20], [IGNORE, IGNORE, IGNORE, 20])]


def lora_model(top: float, layers: int = 4):
    torch.manual_seed(1)
    model = attach_lora(tiny_llama(300, layers=layers), LoraSettings(rank=4, alpha=8, dropout=0.0, top_layers=top,
                                                                     targets=("q_proj", "v_proj", "down_proj")))
    with torch.no_grad():  # B away from zero, so the adapter changes the logits
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    return model


def grads(model, batch, below=None):
    model.zero_grad()
    logits, targets = answer_logits(model, batch, below)
    torch.nn.functional.cross_entropy(logits, targets).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_batch_rows_reads_padded_and_packed_batches_alike():
    assert batch_rows(collate(ROWS, 0)) == batch_rows(pack(ROWS)) == [r.input_ids for r in ROWS]


def test_the_top_layers_alone_give_the_same_logits_and_gradients_as_the_whole_model():
    model = lora_model(0.5)
    below = Below(model, pad_id=0)
    assert below.start == 2  # 4 layers, the top half trained
    for batch in (collate(ROWS, 0), pack(ROWS)):
        want, want_g = grads(model, batch)
        got, got_g = grads(model, batch, below)
        assert torch.allclose(want, got, atol=1e-5)
        assert want_g.keys() == got_g.keys() and all(torch.allclose(want_g[k], got_g[k], atol=1e-6) for k in want_g)
    assert len(below.rows) == 3  # each row computed once, whatever the batch's layout


def test_states_are_kept_per_row_and_the_oldest_dropped_past_the_limit():
    model = lora_model(0.5)
    below = Below(model, pad_id=0, max_rows=2)
    a, = below.states([ROWS[0].input_ids])
    assert a.shape == (5, 32)
    again, = below.states([ROWS[0].input_ids])
    assert again is a  # kept, not computed again
    below.states([ROWS[1].input_ids, ROWS[2].input_ids])
    assert tuple(ROWS[0].input_ids) not in below.rows and len(below.rows) == 2


def test_a_model_trained_in_every_layer_keeps_nothing():
    model = lora_model(1.0)
    below = Below(model, pad_id=0)
    assert below.start == 0
    logits, _ = answer_logits(model, collate(ROWS, 0), below)
    assert not below.rows and logits.shape[0] == 5  # 2 + 2 + 1 answer tokens
