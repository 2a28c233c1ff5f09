"""Several assistants on one base model: each assistant's session chain is one LoRA adapter on a shared copy of the
base weights, chosen for each batch, instead of a merged copy of the whole model per assistant.

The chain's adapters are combined into one (`compose.combined_adapter`: W + Σ_j s_j B_j A_j, what merging them one
after another gives), so an assistant costs its adapters' size, not a model's. Requests of one assistant share a
batch; the scheduler switches the active adapter between batches. A reload (a new active session, a rollback) loads
the new chain as another adapter while nothing decodes, and drops the assistant's adapters older than the one before
it (a request admitted just before the switch still finds its own).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import threading
import time
from pathlib import Path

from ..config import ModelConfig
from ..model import load_base, resolve_device, resolve_dtype, save_tensors
from .holder import Loaded
from .store import Store


class SharedBase:
    """One base model (`model_cfg.name` is replaced by each assistant's own base, which must be the same for all)
    that assistants' adapters are loaded onto; `lock` is the lock every holder on it answers under."""

    def __init__(self, model_cfg: ModelConfig):
        self.cfg = model_cfg
        self.model = None
        self.tok = None
        self.name: str | None = None
        self.lock = threading.Lock()
        self.scheduler = None  # set once the holders batch: reloads then wait for the running batch to drain
        self.loaded: dict[str, list[str]] = {}  # assistant -> its adapters, oldest first
        self.count = 0

    def hold(self) -> contextlib.AbstractContextManager:
        return self.scheduler.update() if self.scheduler is not None else self.lock

    def loader(self, store: Store, session: int | None = None):
        """What `ModelHolder` loads (and reloads) assistant `store` with: its active session (or `session`) as an
        adapter on the shared base."""
        def load() -> Loaded:
            info = store.info()
            k = info["active"] if session is None else session
            chain = store.links(k, info.get("active_epoch") if session is None else None)
            with self.hold():
                name = self._add(store.name, info["model"], [store.adapter_path(j, e) for j, e in chain.items()])
            return Loaded(self.model, self.tok, store.name, k, time.time(), adapter=name)

        return load

    def _add(self, assistant: str, base: str, paths: list[Path]) -> str:
        from peft import PeftModel

        from ..errors import UserError
        from .compose import combined_adapter

        if self.name is not None and base != self.name:
            raise UserError(f"assistant '{assistant}' is built on {base}, the others on {self.name}; one base model "
                            "is shared: serve it from another `forgetlab serve`, or pass --layout merged")
        if self.model is None:
            self.model, self.tok = load_base(self.cfg.model_copy(update={"name": base, "device": "cpu",
                                                                         "dtype": "float32"}))
            self.name = base
        self.count += 1
        name = f"{re.sub(r'[^A-Za-z0-9_]', '_', assistant)}_{self.count}"
        config, state = combined_adapter(paths)
        with tempfile.TemporaryDirectory(prefix="forgetlab-adapter-") as tmp:
            import json

            (Path(tmp) / "adapter_config.json").write_text(json.dumps(config))
            save_tensors(Path(tmp) / "adapter_model.safetensors", state)
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(tmp, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, tmp, adapter_name=name)
        kept = self.loaded.setdefault(assistant, [])
        kept.append(name)
        while len(kept) > 2:
            self.model.delete_adapter(kept.pop(0))
        self.model._forgetlab_active = None  # loading and deleting change which adapter is active
        self.model.requires_grad_(False)
        device = resolve_device(self.cfg.device)
        self.model.to(device, resolve_dtype(self.cfg.dtype, device)).eval()
        return name

