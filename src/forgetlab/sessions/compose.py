"""Build the model a session chain describes, add the adapter a new session trains, save and export.

merge mode: the base is loaded in float32 on the CPU, each session's adapter is merged into it in order (in
float32, whatever the serving dtype: no rounding from merging in half precision), then the model moves to its
device and dtype. stack mode: every session's adapter stays a separate PEFT adapter, all of them active.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import LoraSettings, ModelConfig
from ..errors import UserError
from ..model import add_trainable_adapter, load_base, resolve_device, resolve_dtype, save_tensors
from ..runs import atomic_dir
from .store import Store


def adapter_key(k: int) -> str:
    return f"s{k:03d}"


def load_chain(store: Store, chain: list[int] | dict[int, int | None], model_cfg: ModelConfig, mode: str, on_base=None):
    """(model, tokenizer) with sessions `chain` applied (ids, or {id: kept epoch or None} from `Store.links`), on the
    configured device and dtype, in eval mode.
    `on_base(model, tok)`, when given, is called with the plain base model (float32, CPU) before any session is
    applied: what needs the base model is computed without loading a second copy."""
    from peft import PeftModel

    model, tok = load_base(model_cfg.model_copy(update={"device": "cpu", "dtype": "float32"}))
    if on_base is not None:
        on_base(model, tok)
    epochs = chain if isinstance(chain, dict) else dict.fromkeys(chain)
    for k in chain:
        path = store.adapter_path(k, epochs[k])
        if mode == "merge":
            model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
        elif isinstance(model, PeftModel):
            model.load_adapter(str(path), adapter_name=adapter_key(k))
        else:
            model = PeftModel.from_pretrained(model, str(path), adapter_name=adapter_key(k))
    if isinstance(model, PeftModel):
        model.base_model.set_adapter([adapter_key(k) for k in chain])
        model.requires_grad_(False)
    device = resolve_device(model_cfg.device)
    model.to(device, resolve_dtype(model_cfg.dtype, device)).eval()
    return model, tok


def add_session_adapter(model, k: int, lora: LoraSettings):
    """The model with a new trainable adapter for session k (earlier adapters, if stacked, active and frozen)."""
    return add_trainable_adapter(model, adapter_key(k), lora)


def save_session_adapter(model, k: int, path: Path) -> None:
    """Write session k's adapter as a standard PEFT adapter directory (loadable by `PeftModel.from_pretrained`)."""
    from peft import get_peft_model_state_dict

    name = adapter_key(k)
    state = get_peft_model_state_dict(model, adapter_name=name)
    atomic_dir(path, lambda tmp: (save_tensors(tmp / "adapter_model.safetensors", state),
                                  model.peft_config[name].save_pretrained(str(tmp))))


def export_merged(model, tok, out: Path, meta: dict) -> Path:
    """Save a plain HF model directory (every adapter merged in float32) that `from_pretrained` loads."""
    from peft import PeftModel

    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"export directory {out} exists and is not empty; pass a new or empty directory")
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model = model.to("cpu", torch.float32)

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "forgetlab.json").write_text(json.dumps(meta, indent=2))

    atomic_dir(out, write)
    return out
