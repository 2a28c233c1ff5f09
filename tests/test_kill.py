"""Crash safety, tested by killing: real `forgetlab` commands on the tiny model, each killed with SIGKILL (its whole
process group: children and a local Ray instance too) at seeded random moments, then checked:

- every file under a final name is whole (JSON, JSONL, CSV, YAML, safetensors, torch checkpoints and SQLite all
  parse; what a write left aside has a hidden `.partial` name), and the stores and indexes load;
- carrying on — `--resume`, or running the command again where that is how it carries on — ends with the result
  of a run that was never interrupted.

20 kills in all: sequential 4, session train 4, unlearn 5, sweep 2, the online learner (chat --learn) 5; each
command is killed, then its carrying-on is killed again, several times, before one is let finish.
`make test` runs them (marked `crash`); `make test-fast` leaves them out."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from .test_sweep import sweep_yaml

pytestmark = pytest.mark.crash

EXAMPLES = Path(__file__).parents[1] / "examples" / "sessions"
EXE = str(Path(sys.executable).with_name("forgetlab"))
RNG = random.Random(2026)


def start(args: list[str], stdin: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", COLUMNS="200")
    proc = subprocess.Popen([EXE, *args], stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True,
                            text=True)
    if stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
    return proc


def run(args: list[str], stdin: str | None = None) -> float:
    t0 = time.perf_counter()
    proc = start(args, stdin)
    err = proc.stderr.read()
    assert proc.wait(timeout=600) == 0, err[-3000:]
    return time.perf_counter() - t0


def kill_after(args: list[str], seconds: float, stdin: str | None = None) -> bool:
    """Start the command and SIGKILL its process group after `seconds`; False if it had finished by then."""
    return _kill_after(args, seconds, stdin)[0]


def _kill_after(args: list[str], seconds: float, stdin: str | None = None) -> tuple[bool, float]:
    """kill_after, also giving how long the command ran (its whole run when the kill came too late)."""
    proc = start(args, stdin)
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline and proc.poll() is None:
        time.sleep(0.02)
    finished = proc.poll() is not None
    ran = time.perf_counter() - began
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    proc.stderr.close()
    _wait_for_the_group(proc.pid)
    return not finished, ran


def _wait_for_the_group(pgid: int) -> None:
    for _ in range(200):  # children (a Ray worker, a point's command) leave the group as the kernel reaps them
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def whole(root: Path) -> int:
    """Parse every file under a final name (not a hidden one) below `root`; return how many."""
    n = 0
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(part.startswith(".") and part != ".partial" for part in
                                     path.relative_to(root).parts):
            continue
        n += 1
        name, text = path.name, None
        if path.suffix in (".json", ".jsonl", ".csv", ".yaml", ".md", ".html", ".log", ".txt"):
            text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".jsonl":
            lines = text.split("\n")
            assert lines[-1] == "" or name in ("turns.jsonl", "metrics.jsonl"), path  # append-only logs may be torn
            for line in lines[:-1]:
                if line.strip():
                    json.loads(line)
        elif path.suffix == ".csv":
            rows = list(csv.reader(text.splitlines()))
            assert rows and all(len(r) == len(rows[0]) for r in rows), path
        elif path.suffix == ".yaml":
            yaml.safe_load(text)
        elif path.suffix == ".safetensors":
            load_file(str(path))
        elif path.suffix == ".pt":
            torch.load(path, weights_only=False)
        elif path.suffix == ".sqlite":
            con = sqlite3.connect(path)
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", path
            con.close()
    return n


def moment(total: float) -> float:
    """A seeded random moment in a run of `total` seconds (after the interpreter has started)."""
    return 2.0 + RNG.random() * max(0.5, total - 2.5)


def kill_and_carry_on(name, first, carry_on, result, reference, total, kills, stdin=None, check=None):
    """Kill the command at a random moment, check what is on disk, then kill the carrying-on at random moments too
    (`kills` kills in the chain), let the last carrying-on finish and compare with `reference`. A kill that comes
    after the command finished tells how long a whole run takes now (the timed reference run may have been slowed by
    a cold cache or a busy neighbour): later moments are drawn within that, and the missed kill is drawn again, up to
    `kills` more times. Returns how many kills landed mid-run."""
    out, args = first
    landed = tries = 0
    while landed < kills and tries < 2 * kills:
        tries += 1
        hit, ran = _kill_after(args, moment(total), stdin)
        landed += hit
        if not hit:
            total = min(total, ran)
        whole(out)
        if check:
            check(out)
        following = carry_on(out)
        if not following:  # it had finished before the kill
            break
        args = following[0]
    for args in carry_on(out):
        run(args, stdin)
    assert result(out) == reference, name
    return landed


def test_sequential_killed_anywhere_resumes_to_the_same_numbers(tiny_dir, tmp_path):
    def args(out):
        return ["sequential", "--model", str(tiny_dir), "--out", str(out), "--task", "facts:people", "--task",
                "facts:elements", "--epochs", "2", "--lr", "1e-2", "--no-landscape", "--set", "data.facts.entities=2",
                "--set", "lora.rank=4", "--set", "lora.dropout=0"]

    def result(out):
        runs = list(out.glob("2*"))
        assert len(runs) == 1, runs
        m = json.loads((runs[0] / "metrics.json").read_text())
        assert m["status"] == "complete"
        return m["accuracy"], [round(h["loss"], 6) for h in m["history"]]

    def carry_on(out):
        runs = list(out.glob("2*"))
        return [["sequential", "--resume", str(runs[0])]] if runs else [args(out)]

    def check(out):
        if (out / "index.sqlite").exists():
            assert subprocess.run([EXE, "runs", "--out", str(out)], capture_output=True).returncode == 0

    total = run(args(tmp_path / "ref"))
    reference = result(tmp_path / "ref")
    out = tmp_path / "killed"
    assert kill_and_carry_on("sequential", (out, args(out)), carry_on, result, reference, total, 4, check=check) >= 3


def test_session_train_killed_anywhere_resumes_to_the_same_adapter(tiny_dir, tmp_path):
    data = tmp_path / "faq.json"
    data.write_text(json.dumps(json.loads((EXAMPLES / "cs_dept.json").read_text())[:10]))

    def args(home):
        return ["session", "train", str(data), "--assistant", "a", "--home", str(home),
                "--model", str(tiny_dir), "--epochs", "3", "--set", "max_new_tokens=2", "--set", "lora.dropout=0"]

    def result(home):
        s = home / "a" / "sessions" / "001"
        adapter = load_file(str(s / "adapter" / "adapter_model.safetensors"))
        metrics = json.loads((s / "metrics.json").read_text())
        return sorted((k, round(float(v.double().sum()), 5)) for k, v in adapter.items()), metrics["retention"]

    def carry_on(home):
        part = home / "a" / "sessions" / ".partial"
        if (part / "session.json").is_file():
            return [["session", "train", "--assistant", "a", "--home", str(home), "--resume"]]
        # killed before anything was saved: --resume starts it again (as `sequential --resume` does)
        return [] if (home / "a" / "sessions" / "001").is_dir() else [[*args(home), "--resume"]]

    def check(home):
        if (home / "a" / "assistant.json").is_file():
            r = subprocess.run([EXE, "session", "list", "--assistant", "a", "--home", str(home)], capture_output=True,
                               text=True)
            assert r.returncode == 0, r.stderr

    total = run(args(tmp_path / "ref"))
    reference = result(tmp_path / "ref")
    out = tmp_path / "killed"
    assert kill_and_carry_on("session train", (out, args(out)), carry_on, result, reference, total, 4,
                             check=check) >= 3


def test_unlearn_killed_anywhere_leaves_nothing_torn_and_a_rerun_gives_the_same_numbers(tiny_dir, tmp_path):
    """unlearn carries on by running again (a few minutes on the bundled model; no epoch checkpoints): the killed
    run's directory stays readable and the new run gives the uninterrupted numbers."""
    def args(out):
        return ["unlearn", "--model", str(tiny_dir), "--out", str(out), "--epochs", "2", "--save", "merged",
                "--set", "general.enabled=false", "--set", "train.batch_size=16", "--set", "guard.enabled=false"]

    def result(out):
        runs = [r for r in out.glob("2*") if (r / "unlearn.csv").is_file() and (r / "model").is_dir()]
        rows = list(csv.DictReader((sorted(runs)[-1] / "unlearn.csv").open()))
        return [{k: v for k, v in r.items() if "seconds" not in k and "memory" not in k} for r in rows]

    total = run(args(tmp_path / "ref"))
    reference = result(tmp_path / "ref")
    out = tmp_path / "killed"
    assert kill_and_carry_on("unlearn", (out, args(out)), lambda out: [args(out)], result, reference, total, 5) >= 4


def test_sweep_killed_with_its_ray_instance_resumes_to_the_same_table(tiny_dir, tmp_path):
    config = sweep_yaml(tmp_path, tiny_dir, "  lora.rank: [1, 2]")

    def args(out):
        return ["sweep", "--config", config, "--out", str(out), "--cpus-per-run", "1"]

    def result(out):
        sweep = next(out.glob("2*"))
        rows = list(csv.DictReader((sweep / "sweep.csv").open()))
        assert [r["status"] for r in rows] == ["complete"] * 2
        return {r["point"]: [round(float(r[k]), 5) for k in ("forget_after", "retain_after", "rtt_unlearned_rtt",
                                                               "recovery_rate")] for r in rows}

    def alone(out):
        """The reference: each point's config run alone with `forgetlab unlearn` (test_sweep shows they agree)."""
        numbers = {}
        for config in sorted(next(out.glob("2*")).joinpath("configs").glob("*.yaml")):
            run(["unlearn", "--config", str(config), "--out", str(tmp_path / "alone")])
            m = json.loads(next((tmp_path / "alone").glob(f"*-{config.stem}")).joinpath("metrics.json").read_text())
            numbers[config.stem] = [round(x, 5) for x in (m["final"]["forget_ll"], m["final"]["retain_ll"],
                                                          m["rtt"]["unlearned_rtt"], m["rtt"]["recovery_rate"])]
        return numbers

    def carry_on(out):
        found = [d for d in out.glob("2*") if (d / "config.yaml").is_file()]
        return [["sweep", "--resume", str(found[0])]] if found else [args(out)]

    out = tmp_path / "killed"
    assert kill_after(args(out), 12.0)  # Ray up, the point configs written, the first points started
    # How long carrying on takes from here, timed on a copy, so that the second kill lands inside the resumed run
    # (a fixed window let the resume finish first on a fast machine).
    shutil.copytree(out, tmp_path / "timed")
    resume_seconds = run(carry_on(tmp_path / "timed")[0])
    reference = alone(out)
    assert result(tmp_path / "timed") == reference
    assert kill_and_carry_on("sweep", (out, carry_on(out)[0]), carry_on, result, reference,
                             0.8 * resume_seconds, 1) == 1


def test_the_online_learner_killed_mid_chat_restarts_with_everything_it_had_saved(tiny_dir, tmp_path):
    """chat --learn, killed while it learns from the turns; the restarted chat loads the saved adapter, counters
    and fact memory, and once the same turns are said again the memory holds the same facts as a chat that was
    never killed. (The adapter's weights are not compared: an update in flight when the kill came is redone.)"""
    template = tmp_path / "template"
    run(["session", "train", str(EXAMPLES / "cs_dept.json"), "--assistant", "a", "--home", str(template),
         "--model", str(tiny_dir), "--epochs", "1", "--set", "max_new_tokens=2"])
    turns = "My sister's name is Oriel.\nI live in Tromso.\nMy dog is called Rex.\nMy favourite colour is teal.\n" \
            "I work at Halden Labs.\n/quit\n"
    chat = ["--set", "update.steps=2", "--set", "metrics_every=0", "--set", "gate.controls=2"]

    def home(k):
        h = tmp_path / f"k{k}"
        shutil.copytree(template, h)
        return h, ["chat", "--assistant", "a", "--home", str(h), "--learn", "--max-tokens", "2", *chat]

    def result(h):
        con = sqlite3.connect(h / "a" / "online" / "memory.sqlite")
        facts = sorted(con.execute("SELECT key, value FROM facts").fetchall())
        con.close()
        state = json.loads((h / "a" / "online" / "state.json").read_text())
        assert state["turn"] >= 5 and load_file(str(h / "a" / "online" / "adapter.safetensors"))
        return facts

    def check(h):
        online = h / "a" / "online"
        if (online / "state.json").is_file():
            assert json.loads((online / "state.json").read_text())["turn"] >= 0

    ref, args = home("ref")
    total = run(args, turns)
    reference = result(ref)
    assert len(reference) >= 4, reference
    landed = kill_and_carry_on("online learner", home("killed"), lambda h: [home_args(h, chat)], result, reference,
                               total, 5, stdin=turns, check=check)
    assert landed >= 4


def home_args(h: Path, chat: list[str]) -> list[str]:
    return ["chat", "--assistant", "a", "--home", str(h), "--learn", "--max-tokens", "2", *chat]
