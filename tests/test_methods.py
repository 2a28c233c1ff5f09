"""Every registered method runs through the same loop on the tiny model (one row per method)."""

import math

import pytest
import torch

from forgetlab.batching import encode
from forgetlab.config import TrainConfig
from forgetlab.data import load_task
from forgetlab.loop import train
from forgetlab.methods import METHODS, MethodContext, build_method, call_hook
from forgetlab.model import adapter_state, attach_lora, flat

from .conftest import FEW_FACTS, TINY_LORA, tiny_llama


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_trains_two_tasks(tokenizer, name):
    model = attach_lora(tiny_llama(len(tokenizer)), TINY_LORA)
    method = build_method(name)
    tasks = [load_task(s, FEW_FACTS) for s in ("facts:people", "facts:elements")]
    start = flat(adapter_state(model))
    for i, task in enumerate(tasks):
        ctx = MethodContext(task_index=i, tasks=tasks[: i + 1], tokenizer=tokenizer)
        call_hook(method, "before_task", model, task, ctx)
        enc = [encode(tokenizer, ex, 128) for ex in task.train]
        hist = train(model, enc, TrainConfig(epochs=1, lr=1e-2, batch_size=4), method, ctx,
                     tokenizer.pad_token_id, seed=i)
        call_hook(method, "after_task", model, task, ctx)
        assert all(math.isfinite(h["loss"]) for h in hist)
    assert not torch.equal(flat(adapter_state(model)), start), "training must move the adapter"
