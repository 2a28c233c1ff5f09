"""The one way files and directories are written (runs.atomic_file / atomic_dir), and the grid's table callbacks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import safetensors.torch
import torch

from forgetlab.config import ExecutorConfig
from forgetlab.grid import run_grid
from forgetlab.model import attach_lora, load_lora_state, lora_state, save_lora_state
from forgetlab.runs import TMP_SUFFIX, atomic_dir, atomic_file, clean_partial

from .conftest import TINY_LORA


def test_a_replaced_directory_is_never_missing_nor_mixed(tmp_path):
    """A reader polling while the directory is replaced 200 times always finds it and its files whole. The old
    code (rmtree, then rename) left moments with no directory at all."""
    target, seen, stop = tmp_path / "adapter", [], threading.Event()

    def version(n):
        return lambda tmp: ((tmp / "a").write_text(f"{n:04d}" * 2000), (tmp / "b").write_text(f"{n:04d}" * 2000))

    atomic_dir(target, version(0))

    def read():
        while not stop.is_set():
            try:
                seen.append(((target / "a").read_text(), (target / "b").read_text()))
            except FileNotFoundError:
                seen.append(None)

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(1, 201):
        atomic_dir(target, version(n))
    stop.set()
    reader.join()
    assert len(seen) > 50 and None not in seen
    assert all(len(x) == 8000 and x == x[:4] * 2000 for pair in seen for x in pair)  # never a torn file
    assert (target / "a").read_text() == "0200" * 2000 and sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_file(path, lambda tmp: tmp.write_text('{"ok": 1}'))

    def half(tmp: Path):
        tmp.write_text('{"ok": 2, "trunc')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_file(path, half)
    assert path.read_text() == '{"ok": 1}' and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    with pytest.raises(RuntimeError):
        atomic_dir(tmp_path / "d", lambda tmp: (tmp / "x").write_text("1") and (_ for _ in ()).throw(RuntimeError()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_save_lora_state_never_leaves_a_torn_file(tiny, tmp_path, monkeypatch):
    """`save_lora_state` wrote state.safetensors in place: a failure (or a kill) mid-write left a torn file that
    --resume could not read. Now the old state stays until the new one is whole."""
    model = attach_lora(tiny, TINY_LORA)
    path = tmp_path / "state.safetensors"
    save_lora_state(model, path)
    saved = {k: v.clone() for k, v in lora_state(model).items()}
    real = safetensors.torch.save_file

    def torn(tensors, filename, *a, **kw):
        real(tensors, filename, *a, **kw)
        with open(filename, "r+b") as f:
            f.truncate(100)
        raise OSError(28, "No space left on device")

    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)
    monkeypatch.setattr(safetensors.torch, "save_file", torn)
    with pytest.raises(OSError):
        save_lora_state(model, path)
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    load_lora_state(model, path)
    assert all(torch.equal(v, saved[k]) for k, v in lora_state(model).items())


def test_clean_partial_removes_only_what_writes_left_aside(tmp_path):
    (tmp_path / ".partial").mkdir()  # a session store's training directory: not a leftover
    (tmp_path / f".metrics.json.abc{TMP_SUFFIX}").write_text("{")
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / f".people.xyz{TMP_SUFFIX}").mkdir()
    (tmp_path / "adapters" / "people").mkdir()
    assert clean_partial(tmp_path) == 2
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [".partial", "adapters",
                                                                                 "adapters/people"]


def _square(job):
    return {"job": job, "value": job * job, "status": "complete"}


def test_the_grid_calls_the_table_callback_between_points_and_leaves_the_final_tables_to_the_caller(tmp_path):
    """compare rendered its report twice at the end: run_grid's callback after the last point, then the caller's
    final tables. The callback now comes only while points are still running (a real local Ray instance)."""
    calls = []
    results = run_grid([1, 2, 3], _square, lambda done, status: calls.append((len(done), status)), tmp_path,
                       str, executor=ExecutorConfig(cpus_per_run=1))
    assert [r["value"] for r in results] == [1, 4, 9]
    assert [status for _, status in calls] == ["incomplete", "incomplete"] and sorted(n for n, _ in calls) == [1, 2]
