"""Bad input for every subcommand, in one table, through `main(argv)` in this process: each case gets one line on
stderr naming the problem and the fix, exit code 2, no traceback, and leaves every file as it was (nothing
created, nothing changed). Bad paths, encodings, formats, values out of range, unknown names and damaged stores.

Permissions are not in the table: the tests run as root in CI, where a chmod 000 file is still readable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from forgetlab.cli import main

from .conftest import call_main

EXAMPLES = Path(__file__).parents[1] / "examples" / "sessions"
LATIN1 = '{"instruction": "caf\xe9?", "response": "oui"}\n'.encode("latin-1")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_dir) -> Path:
    """Files to be bad with: an assistant with one session (and damaged copies of it), a finished run (and a damaged
    copy), non-UTF-8 and non-JSON data, a file where a directory is expected, a broken YAML, an MMLU directory."""
    w = tmp_path_factory.mktemp("world")
    (w / "latin1.jsonl").write_bytes(LATIN1)
    (w / "notjson.jsonl").write_text('{"instruction": "a", "response": }\n')
    (w / "afile").write_text("x")
    (w / "bad.yaml").write_text("train: [1, 2\n")
    (w / "mmlu" / "test").mkdir(parents=True)
    (w / "mmlu" / "test" / "algebra_test.csv").write_bytes("Qu\xe9?,a,b,c,d,A\n".encode("latin-1"))
    (w / "mmlu" / "test" / "geometry_test.csv").write_text("What?,a,b,c,d,E\n")
    (w / "onlyconfig").mkdir()
    (w / "onlyconfig" / "config.json").write_text("{}")
    (w / "notokenizer").mkdir()
    for name in ("config.json", "model.safetensors"):
        os.system(f"cp {tiny_dir / name} {w / 'notokenizer'}")
    (w / "comparerun").mkdir()  # what `forgetlab compare` leaves: sequential --resume must send the user there
    (w / "comparerun" / "config.yaml").write_text("strategies: [naive]\n")
    (w / "comparerun" / "compare.json").write_text('{"status": "interrupted"}')
    (w / "noaxes.yaml").write_text("unlearn: {method: {name: gd}}\n")
    (w / "brokenruns").mkdir()
    (w / "brokenruns" / "index.sqlite").write_text("not a database")
    assert main(["session", "train", str(EXAMPLES / "cs_dept.json"), "--assistant", "a", "--home", str(w / "home"),
                 "--model", str(tiny_dir), "--epochs", "1", "--set", "max_new_tokens=2"]) == 0
    assert main(["sequential", "--model", str(tiny_dir), "--out", str(w / "runs"), "--task", "facts:people",
                 "--epochs", "1", "--no-landscape", "--set", "data.facts.entities=2"]) == 0
    damaged = {"home_assistant": ("home", "a/assistant.json"), "home_metrics": ("home", "a/sessions/001/metrics.json"),
               "home_state": ("home", "a/online/state.json"), "home_memory": ("home", "a/online/memory.sqlite")}
    for name, (src, rel) in damaged.items():
        os.system(f"cp -r {w / src} {w / name}")
        (w / name / rel).parent.mkdir(parents=True, exist_ok=True)
        (w / name / rel).write_text('{"active": 1, "mod')
    os.system(f"cp -r {w / 'runs'} {w / 'damaged_runs'}")
    run = next((w / "damaged_runs").glob("2*"))
    (run / "metrics.json").write_text('{"status": "compl')
    (w / "damaged_run").symlink_to(run)
    return w


def tree(*roots: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for root in roots for p in sorted(root.rglob("*"))
            if not p.is_symlink()}


T = "{tiny}"  # the tiny model directory
CASES = [
    # sequential / compare: data files, paths, values, names
    (["sequential", "--task", "file:{w}/latin1.jsonl", "--model", T],
     "latin1.jsonl: not UTF-8 text (byte 20); save the file as UTF-8"),
    (["sequential", "--task", "file:{w}/notjson.jsonl", "--model", T], "line 1: not valid JSON"),
    (["sequential", "--task", "file:{w}/missing.jsonl"], "not found; check the path after 'file:'"),
    (["sequential", "--task", "mmlu:algebra", "--mmlu-dir", "{w}/mmlu", "--model", T], "algebra_test.csv: not UTF-8 text"),
    (["sequential", "--task", "mmlu:geometry", "--mmlu-dir", "{w}/mmlu", "--model", T], "it must be one of A, B, C, D"),
    (["sequential", "--model", T, "--out", "{w}/afile/sub"], "cannot make a run directory there (Not a directory"),
    (["sequential", "--resume", "{w}/afile"], "not a run directory (no config.yaml)"),
    (["sequential", "--resume", "{w}/damaged_run"], "metrics.json is damaged (not JSON"),
    (["sequential", "--config", "{w}/bad.yaml"], "bad.yaml line 2: not valid YAML"),
    (["sequential", "--epochs", "0"], "train.epochs: Input should be greater than 0"),
    (["sequential", "--set", "train.lrr=1"], "unknown key 'train.lrr'; did you mean train.lr?"),
    (["sequential", "--strategy", "nosuch"], "unknown strategy 'nosuch'; valid strategies"),
    (["compare", "--strategies", "naive,nosuch"], "unknown strategy 'nosuch'"),
    (["compare", "--strategies", "naive,ewc:lamm=1"],
     "strategy 'ewc:lamm=1': unknown key 'strategy.ewc.lamm'; did you mean strategy.ewc.lam"),
    (["compare", "--strategies", "ewc:lam=-1"],
     "strategy 'ewc:lam=-1': strategy.ewc.lam: Input should be greater than or equal to 0"),
    (["compare", "--seeds", "a,b"], "--seeds a,b: expected a comma-separated list of numbers"),
    (["compare", "--cpus-per-run", "64", "--model", T], "this machine has"),
    (["runs", "--out", "{w}/brokenruns"], "index.sqlite is not a readable run index"),
    # sessions
    (["session", "train", "{w}/latin1.jsonl", "--assistant", "b", "--home", "{w}/home"], "not UTF-8 text"),
    (["session", "train", "{w}/notjson.jsonl", "--assistant", "b", "--home", "{w}/home"], "not valid JSON"),
    (["session", "train", str(EXAMPLES / "cs_dept.json"), "--assistant", "b", "--home", "{w}/afile", "--model", T],
     "Not a directory; check the path"),
    (["session", "train", str(EXAMPLES / "cs_dept.json"), "--assistant", "b", "--home", "{w}/home", "--replay", "2"],
     "replay: Input should be less than 1"),
    (["session", "train", str(EXAMPLES / "cs_dept.json"), "--assistant", "a", "--home", "{w}/home", "--mode", "stack"],
     "uses mode 'merge'"),
    (["session", "train", "--assistant", "a", "--home", "{w}/home", "--resume"], "nothing to resume for 'a'"),
    (["session", "train", "--assistant", "a", "--home", "{w}/home", "--resume", "--lr", "1", "--epochs", "2"],
     "nothing to resume for 'a'"),  # (with an interrupted session there, the flags are refused: test_sessions)
    (["session", "train", str(EXAMPLES / "cs_dept.json"), "--assistant", "../x", "--home", "{w}/home"], "assistant name"),
    (["session", "list", "--assistant", "nobody", "--home", "{w}/home"], "no assistant 'nobody'"),
    (["session", "list", "--assistant", "a", "--home", "{w}/home_assistant"], "assistant.json is damaged"),
    (["session", "list", "--assistant", "a", "--home", "{w}/home_metrics"], "metrics.json is damaged"),
    (["session", "rollback", "--assistant", "a", "--home", "{w}/home", "--to", "5"], "no session 5"),
    (["session", "export", "--assistant", "a", "--home", "{w}/home", "--merged", "{w}/mmlu"], "exists and is not empty"),
    (["session", "export", "--assistant", "a", "--home", "{w}/home", "--merged", "{w}/out", "--session", "7"], "no session 7"),
    (["session", "compare", "--setting", "nosuch"], "no session files given"),
    (["session", "compare", str(EXAMPLES / "cs_dept.json"), "--setting", "nosuch"], "--setting nosuch: not a built-in"),
    (["session", "compare", str(EXAMPLES / "cs_dept.json"), "--model", "{w}/onlyconfig"], "has no weights"),
    (["session", "train", "{w}/missing.jsonl", "--assistant", "b", "--home", "{w}/home"], "not found; check the path"),
    # chat / serve / online-eval
    (["chat", "--temperature", "3"], "--temperature 3.0: must be in [0, 2]"),
    (["chat", "--max-tokens", "0"], "--max-tokens 0: must be at least 1"),
    (["chat", "--assistant", "a", "--home", "{w}/home", "--session", "9"], "has no session 9"),
    (["chat", "--assistant", "a", "--home", "{w}/home_state", "--learn"], "state.json is corrupt"),
    (["chat", "--assistant", "a", "--home", "{w}/home_memory", "--learn"], "is not a readable fact memory"),
    (["chat", "--assistant", "a", "--home", "{w}/home", "--learn", "--set", "update.lr=-1"], "update.lr"),
    (["serve", "--assistant", "nobody", "--home", "{w}/home"], "no assistant 'nobody'"),
    (["serve", "--port", "99999"], "--port 99999: not a TCP port"),
    (["serve", "--host", "no-such-host.invalid"], "cannot listen there"),
    (["online-eval", "--facts", "{w}/latin1.jsonl", "--model", T], "not UTF-8 text"),
    (["online-eval", "--facts", "{w}/missing.jsonl", "--model", T], "facts file"),
    (["online-eval", "--locality", "{w}/latin1.jsonl", "--model", T], "not UTF-8 text"),
    # unlearning
    (["unlearn", "--method", "nosuch", "--model", T], "unknown unlearning method 'nosuch'"),
    (["unlearn", "--lora-rank", "-1", "--model", T], "lora.rank: Input should be greater than or equal to 0"),
    (["unlearn", "--forget", "{w}/latin1.jsonl", "--model", T], "not UTF-8 text"),
    (["unlearn", "--model", T, "--out", "{w}/afile/sub"], "cannot make a run directory there"),
    (["rtt", "--model", "{w}/missing", "--forget", "{w}/latin1.jsonl"], "not a directory"),
    (["rtt", "--model", T, "--forget", "{w}/latin1.jsonl"], "not UTF-8 text"),
    (["rtt", "--model", T, "--lrs", "1,x"], "e.g. --lrs 1e-4,3e-4"),
    (["sweep", "--axis", "lora.rnak=1,2"], "unknown key 'lora.rnak'; did you mean lora.rank?"),
    (["sweep", "--resume", "{w}/afile"], "not a sweep directory"),
    (["sweep", "--config", "{w}/noaxes.yaml"], "axes: nothing to sweep"),
    (["sweep", "--config", "{w}/noaxes.yaml", "--axis", "rank=1", "--set", "unlearn.model.name={w}/notokenizer"],
     "has no tokenizer files"),
    (["unlearn", "--model", "{w}/onlyconfig"], "has no weights (model.safetensors or pytorch_model.bin), tokenizer files"),
    (["unlearn", "--model", "{w}/notokenizer"], "notokenizer has no tokenizer files"),
    (["compare", "--model", "{w}/notokenizer", "--strategies", "naive"], "has no tokenizer files"),
    (["sequential", "--config", "{w}/mmlu"], "is a directory; pass a YAML file"),
    (["sequential", "--resume", "{w}/comparerun"], "a `compare` run; carry it on with `forgetlab compare --resume"),
    # argument errors
    (["session", "train", "--epochs", "many"], "invalid int value"),
    (["nosuchcommand"], "invalid choice"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(args, message, world, tiny_dir, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)  # where default output directories (runs/) would appear
    argv = [a.format(w=world, tiny=tiny_dir) for a in args]
    before = tree(world, tmp_path)
    r = call_main(capsys, *argv)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert message in line, line
    assert tree(world, tmp_path) == before  # nothing created, nothing changed


def test_a_damaged_run_index_does_not_fail_the_run_it_would_list(tiny_dir, tmp_path, capsys):
    """Hours of training must not end in an error because the index beside the runs is damaged: the run finishes,
    says on stderr that it was not indexed, and its own files are complete."""
    (tmp_path / "index.sqlite").write_text("not a database")
    r = call_main(capsys, "sequential", "--model", str(tiny_dir), "--out", str(tmp_path), "--task", "facts:people",
                  "--epochs", "1", "--no-landscape", "--set", "data.facts.entities=2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "warning: the run was not added to the index" in r.stderr
    run = next(tmp_path.glob("2*"))
    assert json.loads((run / "metrics.json").read_text())["status"] == "complete"
    assert (tmp_path / "index.sqlite").read_text() == "not a database"


def test_session_train_names_no_prefix_it_does_not_take(world, capsys):
    r = call_main(capsys, "session", "train", str(world / "missing.jsonl"), "--assistant", "b", "--home",
                  str(world / "home"))
    assert r.returncode == 2 and "file:" not in r.stderr, r.stderr
