"""Model loading, LoRA attachment, adapter save / load."""

import pytest
import torch

from forgetlab.config import LoraSettings, ModelConfig
from forgetlab.errors import UserError
from forgetlab.model import (
    adapter_state,
    attach_lora,
    bundled_gguf,
    linear_names,
    load_adapter_state,
    load_adapter_weights,
    load_base,
    save_adapter,
)

from .conftest import TINY_LORA, tiny_llama


def test_bundled_gguf_is_found():
    path = bundled_gguf()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000


def test_unknown_target_lists_linear_layers(tokenizer):
    with pytest.raises(UserError, match=r"no linear layer named qkv_proj; its linear layers are: .*q_proj"):
        attach_lora(tiny_llama(len(tokenizer)), LoraSettings(targets=("qkv_proj",)))
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(
        linear_names(tiny_llama(len(tokenizer))))


def test_fresh_adapter_is_the_base_model(tokenizer):
    base = tiny_llama(len(tokenizer))
    ids = torch.tensor([[1, 5, 9, 14]])
    before = base(ids).logits.clone()
    model = attach_lora(base, TINY_LORA)
    assert torch.allclose(model(ids).logits, before)


def test_save_and_load_adapter_roundtrip(tokenizer, tmp_path):
    model = attach_lora(tiny_llama(len(tokenizer)), TINY_LORA)
    with torch.no_grad():
        for _n, p in model.named_parameters():
            if p.requires_grad:
                p.normal_()
    state = adapter_state(model)
    save_adapter(model, tmp_path / "facts-people", {"task": "facts:people"})
    assert (tmp_path / "facts-people" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "facts-people" / "meta.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")], "no temporary files left"
    other = attach_lora(tiny_llama(len(tokenizer)), TINY_LORA)
    load_adapter_weights(other, tmp_path / "facts-people")
    loaded = adapter_state(other)
    assert all(torch.equal(state[k], loaded[k]) for k in state)
    load_adapter_state(other, {k: torch.zeros_like(v) for k, v in state.items()})
    assert all(float(v.abs().sum()) == 0 for v in adapter_state(other).values())


def test_missing_local_model_dir():
    with pytest.raises(UserError, match="model directory ./no-such-model not found"):
        load_base(ModelConfig(name="./no-such-model"))
