"""One executor for every grid (`compare`: strategies × seeds; `session compare`: settings × session files).

A grid point is a plain function call, `run(job) -> result dict`, run in order; most points run a `forgetlab`
command in a child process (`run_command`), so a failure or running out of memory stays in that point and peak
memory is the point's own. After every point `after(results, status)` is called with status "incomplete" or
"complete" (tables rewritten as results come in); Ctrl-C lets the running child save what it has, calls
`after(results, "interrupted")` and raises `Interrupted`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .errors import Interrupted


def run_grid(jobs: list, run: Callable[[object], dict], after: Callable[[list[dict], str], None], out: Path,
             label: Callable[[object], str], console=None, command: str = "compare") -> list[dict]:
    """Run every job in order; return their result dicts."""
    results: list[dict] = []
    for n, job in enumerate(jobs, 1):
        if console:
            console.rule(f"{command} {n}/{len(jobs)}: {label(job)}")
        try:
            results.append(run(job))
        except KeyboardInterrupt:
            after(results, "interrupted")
            raise Interrupted(out, command) from None
        after(results, "complete" if n == len(jobs) else "incomplete")
    return results


def run_command(args: list[str]) -> dict:
    """Run `forgetlab ARGS` in a child process; {"status": complete|failed, "error": last stderr line, "seconds"}.

    The child's stderr is passed through when it fails. On Ctrl-C the child gets the same signal; it is waited for
    (it saves what it has finished) and the KeyboardInterrupt is raised again."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "forgetlab.cli", *args], stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate()
    except KeyboardInterrupt:
        proc.wait()
        raise
    seconds = time.perf_counter() - t0
    if proc.returncode == 0:
        return {"status": "complete", "error": None, "seconds": seconds}
    lines = [line for line in err.splitlines() if line.strip()]
    sys.stderr.write(err[-4000:])
    return {"status": "failed", "error": lines[-1] if lines else f"exit code {proc.returncode}", "seconds": seconds}
