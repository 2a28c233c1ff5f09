"""Shared set-up for the benchmarks: the bundled model, a facts task, timing helpers."""

from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bundled(preset: str = "light"):
    """(model with a fresh LoRA adapter, tokenizer) on the bundled model."""
    import torch

    from forgetlab.config import LoraSettings, ModelConfig
    from forgetlab.model import attach_lora, load_base

    model, tok = load_base(ModelConfig())
    torch.manual_seed(0)
    return attach_lora(model, LoraSettings(preset=preset)), tok


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0
