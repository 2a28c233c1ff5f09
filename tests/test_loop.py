"""The training loop on a tiny random model: it learns, it is deterministic, the schedule has the right shape."""

import pytest

from forgetlab.batching import encode
from forgetlab.config import TrainConfig
from forgetlab.data import load_task
from forgetlab.errors import UserError
from forgetlab.loop import steps_for, train, warmup_cosine
from forgetlab.methods import STRATEGIES, MethodContext, build_method
from forgetlab.model import attach_lora

from .conftest import FEW_FACTS, TINY_LORA, tiny_llama


def run(tokenizer, seed=0, lora=True, **train_kw):
    """Train on a small facts task; with lora=False every weight of the tiny model trains (it learns fast)."""
    model = tiny_llama(len(tokenizer))
    if lora:  # dropout on, so determinism covers the dropout masks too
        model = attach_lora(model, TINY_LORA.model_copy(update={"dropout": 0.1}))
    task = load_task("facts:people", FEW_FACTS)
    enc = [encode(tokenizer, ex, 128) for ex in task.train]
    cfg = TrainConfig(**{"epochs": 4, "lr": 1e-2, "batch_size": 4, "seed": seed, **train_kw})
    return train(model, enc, cfg, build_method("naive"), MethodContext(0), tokenizer.pad_token_id, seed=seed)


def test_loss_goes_down_and_history_is_complete(tokenizer):
    hist = run(tokenizer, lora=False)
    assert len(hist) == steps_for(len(load_task("facts:people", FEW_FACTS).train), TrainConfig(epochs=4, batch_size=4))
    first, last = sum(h["loss"] for h in hist[:3]) / 3, sum(h["loss"] for h in hist[-3:]) / 3
    assert last < first * 0.9
    assert {"step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"} <= set(hist[0])


def test_same_seed_same_losses(tokenizer):
    a = [h["loss"] for h in run(tokenizer, seed=1)]
    b = [h["loss"] for h in run(tokenizer, seed=1)]
    c = [h["loss"] for h in run(tokenizer, seed=2)]
    assert a == b
    assert a != c


def test_grad_accumulation_counts_steps(tokenizer):
    hist = run(tokenizer, grad_accum=2, epochs=1)
    assert len(hist) == 3  # 24 examples, batch 4 -> 6 batches -> 3 optimizer steps of 2 batches


def test_warmup_then_cosine():
    f = warmup_cosine(100, 0.1, 0.1)
    assert f(0) < f(5) < f(9) <= 1.0
    assert f(10) == pytest.approx(1.0)
    assert f(99) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 99))


def test_method_registry_lookup():
    assert "naive" in STRATEGIES
    with pytest.raises(UserError, match="valid strategies: naive"):
        build_method("nope")
