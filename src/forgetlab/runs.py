"""Run directories and the run index.

A run lives in `<root>/<date>-<time>-<name>/`: config.yaml, metrics.json, CSVs, adapters/<task>/ (safetensors +
meta.json) and report.html. Every file is written atomically (temporary file, then rename), so an interrupted
run never leaves a half-written file. `<root>/index.sqlite` lists all runs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sqlite3
import tempfile
import time
from pathlib import Path


def slug(text: str) -> str:
    """A file-name-safe form of a task or run name: 'facts:people' -> 'facts-people'."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-")[:80] or "run"


def new_run_dir(root: str | Path, name: str) -> Path:
    """Create and return a fresh run directory under `root`."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{slug(name)}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean(obj):
    """JSON has no NaN: write it as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(_clean(obj), indent=2, default=str) + "\n")


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if isinstance(v, float) and math.isnan(v) else (f"{v:.6g}" if isinstance(v, float) else v)
                    for v in r])
    write_text(path, buf.getvalue())


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def _db(root: Path) -> sqlite3.Connection:
    Path(root).mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(Path(root) / "index.sqlite", timeout=30)
    con.execute("CREATE TABLE IF NOT EXISTS runs (path TEXT PRIMARY KEY, kind TEXT, name TEXT, created TEXT, "
                "status TEXT, summary TEXT)")
    return con


def index_run(root: str | Path, run_dir: Path, kind: str, name: str, status: str, summary: dict) -> None:
    """Insert or update a run's row in `<root>/index.sqlite`."""
    with _db(Path(root)) as con:
        con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                    "status=excluded.status, summary=excluded.summary",
                    (str(Path(run_dir).resolve()), kind, name, time.strftime("%Y-%m-%d %H:%M:%S"), status,
                     json.dumps(_clean(summary))))
    con.close()


def list_runs(root: str | Path) -> list[dict]:
    """All indexed runs, newest first."""
    if not (Path(root) / "index.sqlite").is_file():
        return []
    con = _db(Path(root))
    rows = con.execute("SELECT path, kind, name, created, status, summary FROM runs ORDER BY created DESC").fetchall()
    con.close()
    return [{"path": p, "kind": k, "name": n, "created": c, "status": s, "summary": json.loads(m or "{}")}
            for p, k, n, c, s, m in rows]


def peak_memory_mb(model=None) -> float:
    """Peak memory of this process in MiB: CUDA's peak allocation when the model is on a GPU, else peak RSS."""
    import torch

    if model is not None and next(model.parameters()).device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
