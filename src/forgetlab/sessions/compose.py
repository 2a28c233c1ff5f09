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


def empty_dir(out) -> Path:
    """`out` as a path that is new or an empty directory (an export's target)."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"export directory {out} exists and is not empty; pass a new or empty directory")
    return out


def combined_adapter(paths: list[Path]) -> tuple[dict, dict[str, torch.Tensor]]:
    """One LoRA adapter equal to several applied together (stacked, or merged one after another: either way the
    weight becomes W + Σ_j s_j B_j A_j): A stacks the sessions' A's, B puts s_j B_j side by side, so rank R = Σ r_j and
    alpha = R (scaling 1). A module a session does not adapt gets zero blocks there. Returns (PEFT adapter_config,
    weights under PEFT's saved names)."""
    from safetensors.torch import load_file

    configs = [json.loads((p / "adapter_config.json").read_text()) for p in paths]
    weights = [load_file(str(p / "adapter_model.safetensors")) for p in paths]
    for p, c in zip(paths, configs, strict=True):
        if c.get("use_rslora") or c.get("rank_pattern") or c.get("alpha_pattern") or c.get("use_dora"):
            raise UserError(f"{p}: an adapter with rsLoRA, DoRA or per-module ranks cannot be combined; export "
                            "--merged instead")
    modules = sorted({k[: -len(".lora_A.weight")] for w in weights for k in w if k.endswith(".lora_A.weight")})
    ranks = [int(c["r"]) for c in configs]
    state = {}
    for m in modules:
        shape_a = next(w[f"{m}.lora_A.weight"].shape for w in weights if f"{m}.lora_A.weight" in w)
        shape_b = next(w[f"{m}.lora_B.weight"].shape for w in weights if f"{m}.lora_B.weight" in w)
        a_blocks, b_blocks = [], []
        for w, c, r in zip(weights, configs, ranks, strict=True):
            if f"{m}.lora_A.weight" in w:
                a_blocks.append(w[f"{m}.lora_A.weight"].float())
                b_blocks.append(w[f"{m}.lora_B.weight"].float() * (float(c["lora_alpha"]) / r))
            else:
                a_blocks.append(torch.zeros(r, shape_a[1]))
                b_blocks.append(torch.zeros(shape_b[0], r))
        state[f"{m}.lora_A.weight"] = torch.cat(a_blocks, 0).contiguous()
        state[f"{m}.lora_B.weight"] = torch.cat(b_blocks, 1).contiguous()
    rank = sum(ranks)
    targets = sorted({t for c in configs for t in (c["target_modules"] if isinstance(c["target_modules"], list)
                                                   else [c["target_modules"]])})
    config = {**configs[0], "r": rank, "lora_alpha": rank, "target_modules": targets, "lora_dropout": 0.0,
              "rank_pattern": {}, "alpha_pattern": {}, "use_rslora": False, "inference_mode": True}
    return config, state


def export_adapter(paths: list[Path], out: Path, meta: dict) -> Path:
    """Write the sessions' adapters combined into one PEFT adapter directory (what vLLM's --lora-modules loads)."""
    config, state = combined_adapter(paths)

    def write(tmp: Path) -> None:
        save_tensors(tmp / "adapter_model.safetensors", state)
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2))
        (tmp / "forgetlab.json").write_text(json.dumps(meta, indent=2))

    atomic_dir(empty_dir(out), write)
    return Path(out).expanduser()


def export_merged(model, tok, out: Path, meta: dict) -> Path:
    """Save a plain HF model directory (every adapter merged in float32) that `from_pretrained` loads."""
    from peft import PeftModel

    out = empty_dir(out)
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model = model.to("cpu", torch.float32)

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "forgetlab.json").write_text(json.dumps(meta, indent=2))

    atomic_dir(out, write)
    return out
