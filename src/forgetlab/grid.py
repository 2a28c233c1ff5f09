"""One executor for every grid (`sweep`: unlearning settings; `compare`: strategies × seeds; `session compare`:
settings): Ray tasks.

A grid point is a plain function call, `run(job) -> result dict`, made inside a Ray task that asks for the point's
cores (and GPUs). Most points run a `forgetlab` command in a child process (`run_command`), so a failure or running
out of memory stays in that point and peak memory is the point's own. Ray starts a local instance sized for this
machine unless an address is given (`auto`, `ray://host:10001`): the same command then fans out over a cluster,
where every node needs forgetlab installed and the output directory on a shared filesystem.

Results stream back as points finish (a progress bar over points with the time left); after each one but the last
`after(results, "incomplete")` is called with the finished results in job order, so tables are rewritten as results
come in (the caller writes the final ones, once, when run_grid returns). A point that raises is reported as failed
with its error and the rest finish. Ctrl-C cancels the points still running (each child saves what it has), calls
`after(results, "interrupted")` and raises `Interrupted`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .config import ExecutorConfig
from .errors import Interrupted, UserError


def run_grid(jobs: list, run: Callable[[object], dict], after: Callable[[list[dict], str], None], out: Path,
             label: Callable[[object], str], console=None, command: str = "compare",
             executor: ExecutorConfig | None = None, failed: Callable[[object, str], dict] | None = None) -> list[dict]:
    """Run every job as a Ray task; return their result dicts in job order.

    A job whose points depend on each other (the sessions of one setting) returns a list of result dicts, in order.
    `failed(job, error)` makes the result of a point whose function raised (default: {"status": "failed", ...})."""
    executor = executor or ExecutorConfig()
    if not jobs:
        stop_ray()
        return []
    ray = start_ray(executor)
    threads = cpus_per_run(executor)
    task = ray.remote(_point).options(num_cpus=threads, num_gpus=executor.gpus_per_run or 0, max_retries=0)
    results: list = [None] * len(jobs)
    pending = {task.remote(run, job, threads): i for i, job in enumerate(jobs)}
    from .report import count_progress

    bar = count_progress(console)
    try:
        with bar:
            tid = bar.add_task(f"{command}: {len(jobs)} points", total=len(jobs))
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i = pending.pop(ref)
                    try:
                        results[i] = ray.get(ref)
                    except Exception as e:  # the point's function raised: report it, keep going
                        message = _last_line(str(e)) or type(e).__name__
                        results[i] = failed(jobs[i], message) if failed else {"status": "failed", "error": message}
                    bar.update(tid, advance=1)
                    for result in _flat([results[i]]):
                        _report(bar.console, label(jobs[i]), result)
                    if pending:
                        after(_flat(results), "incomplete")
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # the worker gets KeyboardInterrupt; run_command passes it on to the child and waits
        if pending:
            ray.wait(list(pending), num_returns=len(pending), timeout=120)
        after(_flat(results), "interrupted")
        raise Interrupted(out, command) from None
    finally:
        stop_ray()
    return _flat(results)


def grid_status(results: list[dict]) -> str:
    """'complete' when every point finished, 'partial' when some failed, 'failed' when none finished."""
    done = sum(r.get("status") == "complete" for r in results)
    return "complete" if done == len(results) else "partial" if done else "failed"


def _flat(results: list) -> list[dict]:
    """The finished results in job order, a job's list of results spread out."""
    out: list[dict] = []
    for r in results:
        if isinstance(r, list):
            out.extend(r)
        elif r is not None:
            out.append(r)
    return out


_started = False  # whether start_ray connected this process (then the grid that used it shuts it down)


def start_ray(executor: ExecutorConfig):
    """Join the cluster at `executor.address`, or start a local instance for this machine (no dashboard, a small
    object store: points pass only small dicts). Reuses an instance this process already runs. Commands call it
    before they make their output directory, so an unreachable cluster leaves nothing behind."""
    global _started
    import ray

    if ray.is_initialized():
        return ray
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
             "configure_logging": True}
    if executor.address:
        _probe(executor.address)
        try:
            ray.init(address=executor.address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"--address {executor.address}: cannot join the Ray cluster ({_last_line(str(e))}); "
                            "start one with `ray start --head` or leave --address out for a local instance") from None
    else:
        check_executor(executor)
        ray.init(num_cpus=os.cpu_count() or 1, num_gpus=_local_gpus(), object_store_memory=128 * 2**20, **quiet)
    _started = True
    return ray


def _probe(address: str) -> None:
    """Fail fast on a host:port nobody listens on: Ray's own client keeps retrying for minutes."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the like: Ray finds the cluster itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(f"--address {address}: nothing answers there ({e.strerror or e}); check the head node's "
                        "address and port, or leave --address out for a local instance") from None


def stop_ray() -> None:
    """Shut down the instance start_ray started (a cluster keeps running; only this driver leaves)."""
    global _started
    if _started:
        import ray

        ray.shutdown()
        _started = False


def check_executor(executor: ExecutorConfig) -> None:
    """A local instance cannot give a point more cores or GPUs than this machine has (Ray would wait forever)."""
    if executor.address:
        return
    cores = os.cpu_count() or 1
    if executor.cpus_per_run and executor.cpus_per_run > cores:
        raise UserError(f"--cpus-per-run {executor.cpus_per_run:g}: this machine has {cores} cores; ask for at most "
                        f"{cores} or join a cluster with --address")
    gpus = _local_gpus()
    if executor.gpus_per_run > gpus:
        raise UserError(f"--gpus-per-run {executor.gpus_per_run:g}: this machine has {gpus} GPUs; leave it at 0 or "
                        "join a cluster with GPU nodes with --address")


def cpus_per_run(executor: ExecutorConfig) -> float:
    return executor.cpus_per_run or float(os.cpu_count() or 1)


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _point(run: Callable[[object], dict], job, threads: float) -> dict:
    """Inside the Ray task: give the point (and the child it starts) the cores it asked for, then run it.
    Ray sets OMP_NUM_THREADS to 1 in workers unless told otherwise."""
    n = str(max(1, int(threads)))
    os.environ.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n)
    import torch

    torch.set_num_threads(int(n))
    return run(job)


def _report(console, label: str, result: dict) -> None:
    seconds = result.get("seconds")
    took = f" in {seconds:.0f} s" if seconds else " (finished earlier)" if result.get("status") == "complete" else ""
    if result.get("status") == "complete":
        console.print(f"[green]done[/green] {label}{took}")
    else:
        console.print(f"[red]failed[/red] {label}{took}: {result.get('error')}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_command(args: list[str], log: Path | None = None) -> dict:
    """Run `forgetlab ARGS` in a child process; {"status": complete|failed, "error": last stderr line, "seconds"}.

    With `log`, the child's output goes to that file; otherwise stdout is passed through and stderr shown when it
    fails. On Ctrl-C (or a cancelled Ray task) the child gets SIGINT and is waited for (it saves what it has
    finished); the KeyboardInterrupt is raised again."""
    t0 = time.perf_counter()
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
        sink = open(log, "w")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen([sys.executable, "-m", "forgetlab.cli", *args], stdout=sink, stderr=subprocess.STDOUT,
                                text=True)
    else:
        sink = None
        proc = subprocess.Popen([sys.executable, "-m", "forgetlab.cli", *args], stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate()
    except KeyboardInterrupt:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait()
        raise
    finally:
        if sink:
            sink.close()
    seconds = time.perf_counter() - t0
    if proc.returncode == 0:
        return {"status": "complete", "error": None, "seconds": seconds}
    if log:
        err = log.read_text(errors="replace")
    else:
        sys.stderr.write(err[-4000:])
    error = _last_line(err.replace("\r", "\n")) or f"exit code {proc.returncode}"
    return {"status": "failed", "error": error, "seconds": seconds}
