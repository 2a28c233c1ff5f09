"""The learner's durable state in its directory: the adapter (`adapter.safetensors`), the counters (`state.json`),
one line per learned turn (`turns.jsonl`) and per measurement (`metrics.jsonl`), the optimizer's moments
(`optimizer.pt`, with update.persistent_optimizer); the fact memory is `memory.sqlite`.

Files are replaced atomically (written aside, then renamed); the line logs are appended, and a torn last line (a
kill during the append) is skipped when read. A restart loads the adapter and counters of the last checkpoint.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..data.file import jsonl_lines
from ..errors import UserError
from ..model import load_tensors_into, lora_layers, save_tensors
from ..runs import atomic_file, read_json, write_json

STATE_VERSION = 1

OPTIMIZER = "optimizer.pt"

ADAPTER = "online"
"""The name of the online learner's LoRA adapter."""


def read_lines(path: Path) -> list[dict]:
    """The JSON lines of `path` (none when missing); a torn or corrupt line is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in jsonl_lines(path.read_text(encoding="utf-8", errors="replace")):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class LearnerState:
    """Counters and logs of an online learner, persisted in `dir`."""

    def __init__(self, dir: Path, parent: int | None):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.turn, self.learned_turns, self.rejected, self.parent = 0, 0, 0, parent
        self.last_metrics: dict | None = None
        self.errors: list[str] = []
        self.optimizer = None  # the learner's persistent optimizer (update.persistent_optimizer), when it keeps one
        path = self.dir / "state.json"
        if path.is_file():
            try:
                saved = read_json(path)
                self.turn, self.learned_turns, self.rejected = saved["turn"], saved["learned_turns"], saved["rejected"]
                self.last_metrics = saved.get("last_metrics")
            except (ValueError, KeyError, UserError):
                raise UserError(f"{path} is corrupt; move it away to start the learner afresh (the fact memory "
                                "and the adapter stay)") from None
            if saved.get("parent") != parent:
                raise UserError(f"the online state in {self.dir} was learned on session {saved.get('parent')}, the "
                                f"assistant is now on session {parent}; move {self.dir} away to start afresh")

    def next_turn(self) -> int:
        with self._lock:
            self.turn += 1
            return self.turn

    def metrics_history(self) -> list[dict]:
        return read_lines(self.dir / "metrics.jsonl")

    def turn_lines(self) -> list[dict]:
        """One line per turn learned (kind, time, facts, its updates), oldest first."""
        return read_lines(self.dir / "turns.jsonl")

    def updates_history(self) -> list[dict]:
        return [u for t in self.turn_lines() for u in t.get("updates", [])]

    def record(self, result, memory) -> None:
        """Append the turn's line (and its metrics' line) to the logs."""
        if result.updates:
            self.learned_turns += 1
            self.rejected += sum(not u.kept for u in result.updates)
        line = {"turn": result.turn, "kind": result.kind, "time": time.time(), "facts": len(memory.all()),
                "updates": [asdict(u) for u in result.updates]}
        self._append("turns.jsonl", line)
        if result.metrics is not None:
            self.last_metrics = result.metrics
            self._append("metrics.jsonl", result.metrics)

    def log_error(self, turn: int, error: Exception) -> None:
        self.errors.append(f"turn {turn}: {type(error).__name__}: {error}")
        self._append("turns.jsonl", {"turn": turn, "kind": "error", "error": self.errors[-1]})

    def _append(self, name: str, obj: dict) -> None:
        with open(self.dir / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def checkpoint(self, model, turn: int) -> None:
        """The adapter, then the counters that point at it, each replaced atomically."""
        save_tensors(self.dir / "adapter.safetensors", online_state(model))
        if self.optimizer is not None:
            atomic_file(self.dir / OPTIMIZER, lambda tmp: torch.save(self.optimizer.state_dict(), tmp))
        write_json(self.dir / "state.json", {"version": STATE_VERSION, "turn": turn, "learned_turns": self.learned_turns,
                                             "rejected": self.rejected, "parent": self.parent,
                                             "last_metrics": self.last_metrics})

    def restore(self, model) -> bool:
        """Load the checkpointed adapter into `model`'s online adapter; False when there is none."""
        path = self.dir / "adapter.safetensors"
        if not path.is_file():
            return False
        load_tensors_into(model, path, f"the learner's LoRA settings differ: use the settings it was learned with "
                          f"(the same lora.rank, lora.targets and lora.top_layers) or move {self.dir} away")
        return True

    def restore_optimizer(self) -> None:
        """Load the checkpointed moments into `self.optimizer`, when an earlier run saved them."""
        path = self.dir / OPTIMIZER
        if path.is_file():
            try:
                self.optimizer.load_state_dict(torch.load(path, weights_only=True))
            except (ValueError, RuntimeError, KeyError):
                raise UserError(f"{path} does not fit the learner's adapter; move it away to start the optimizer "
                                "afresh") from None

    def clear(self, model) -> None:
        """Forget everything learned: the online adapter re-initialised (B = 0), counters and logs emptied."""

        for layer in lora_layers(model):
            if ADAPTER in layer.lora_A:
                layer.reset_lora_parameters(ADAPTER, True)
        self.learned_turns = self.rejected = 0
        self.last_metrics = None
        self.optimizer = None
        for name in ("turns.jsonl", "metrics.jsonl", OPTIMIZER):
            (self.dir / name).unlink(missing_ok=True)
        self.checkpoint(model, self.turn)


def online_state(model) -> dict:
    """The online adapter's tensors (CPU, contiguous), by parameter name."""

    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if f".{ADAPTER}." in n}
