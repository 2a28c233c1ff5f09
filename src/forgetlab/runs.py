"""Run directories and the run index.

A run lives in `<root>/<date>-<time>-<name>/`: config.yaml, metrics.json, CSVs, adapters/<task>/ (safetensors +
meta.json) and report.html. Every file and directory is written atomically through `atomic_file` / `atomic_dir` (written aside
under a hidden `.partial` name, then renamed into place), so an interrupted run never leaves a half-written file
under its final name. `<root>/index.sqlite` lists all runs.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .errors import UserError


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
    try:
        path.mkdir(parents=True)
    except OSError as e:
        raise UserError(f"--out {root}: cannot make a run directory there ({e.strerror}: {e.filename}); pass a "
                        "directory you can write to") from None
    return path


TMP_SUFFIX = ".partial"  # the names written aside while a file or directory is being written: `.<name>.<random>.partial`


def atomic_file(path: str | Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` writes a temporary file beside `path`, which is then renamed over `path` in one step: a reader,
    or a process killed mid-write, sees the old file or the new one, never part of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_dir(path: str | Path, fill: Callable[[Path], object]) -> None:
    """`fill(tmp)` fills a fresh temporary directory beside `path`, which then takes the place of `path` in one step.
    An existing `path` (directory or file) is swapped out with renameat2(RENAME_EXCHANGE), so there is no moment
    without one; where the system lacks it, the old one is renamed aside first (a brief gap) and removed after."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        fill(tmp)
        if not (path.exists() or path.is_symlink()):
            os.replace(tmp, path)
        elif not _exchange(tmp, path):
            aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX))
            os.replace(path, aside / "old")
            os.replace(tmp, path)
            tmp = aside
    finally:
        _remove(tmp)  # after a swap: the old one


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def clean_partial(root: str | Path) -> int:
    """Remove what writes killed midway left behind under `root` (the `.<name>.<random>.partial` files and
    directories); return how many. Resuming commands call it."""
    n = 0
    for p in sorted(Path(root).rglob(f".*{TMP_SUFFIX}"), key=lambda p: -len(p.parts)):
        _remove(p)
        n += 1
    return n


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    atomic_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


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
    """A JSON file forgetlab wrote; one that is not JSON (edited or damaged by hand) is a UserError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is damaged (not JSON: {getattr(e, 'msg', e)}); restore it from a copy or move the "
                        "run (or session) it belongs to away") from None


def _db(root: Path) -> sqlite3.Connection:
    Path(root).mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(Path(root) / "index.sqlite", timeout=30)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS runs (path TEXT PRIMARY KEY, kind TEXT, name TEXT, created TEXT, "
                    "status TEXT, summary TEXT)")
    except sqlite3.DatabaseError as e:
        con.close()
        raise UserError(f"{Path(root) / 'index.sqlite'} is not a readable run index ({e}); move it away (the runs "
                        "themselves are intact; runs that finish later are indexed in a new one)") from None
    return con


def index_run(root: str | Path, run_dir: Path, kind: str, name: str, status: str, summary: dict) -> None:
    """Insert or update a run's row in `<root>/index.sqlite`. A damaged index is reported on stderr and skipped:
    the run's own files are what count, and hours of work must not fail at the last line."""
    try:
        con = _db(Path(root))
        with con:
            con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                        "status=excluded.status, summary=excluded.summary",
                        (str(Path(run_dir).resolve()), kind, name, time.strftime("%Y-%m-%d %H:%M:%S"), status,
                         json.dumps(_clean(summary))))
        con.close()
    except (UserError, sqlite3.DatabaseError) as e:
        print(f"forgetlab: warning: the run was not added to the index: {e}", file=sys.stderr)


def list_runs(root: str | Path) -> list[dict]:
    """All indexed runs, newest first."""
    if not (Path(root) / "index.sqlite").is_file():
        return []
    con = _db(Path(root))
    try:
        rows = con.execute("SELECT path, kind, name, created, status, summary FROM runs ORDER BY created DESC").fetchall()
    except sqlite3.DatabaseError as e:
        raise UserError(f"{Path(root) / 'index.sqlite'} is not a readable run index ({e}); move it away (the runs "
                        "themselves are intact)") from None
    finally:
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


def child_run(root: str | Path, name: str) -> tuple[Path | None, dict]:
    """A grid point's run: the newest run directory named `name` under `root` (`<date>-<name>`, as new_run_dir
    makes them) and its metrics.json ({} when there is none yet): how compare and sweep find what a point left."""
    name = slug(name)
    found = sorted(p for p in Path(root).glob(f"*-{name}*") if re.fullmatch(rf"\d{{8}}-\d{{6}}-{re.escape(name)}(-\d+)?",
                                                                            p.name))
    if not found:
        return None, {}
    try:
        return found[-1], read_json(found[-1] / "metrics.json")
    except (UserError, OSError):  # not written yet, or torn by a kill: the point runs (or resumes) again
        return found[-1], {}


RUN_FILES = (("compare.json", "compare"), ("sweep.json", "sweep"), ("session_compare.json", "session compare"))


def run_kind(run_dir: Path) -> str | None:
    """Which command made `run_dir` ('sequential', 'compare', 'unlearn', 'sweep', ...), None when it cannot tell."""
    run_dir = Path(run_dir)
    for name, kind in RUN_FILES:
        if (run_dir / name).is_file():
            return kind
    if (run_dir / "metrics.json").is_file():
        try:
            return json.loads((run_dir / "metrics.json").read_text()).get("kind")
        except (ValueError, OSError, AttributeError):
            return None
    return None
