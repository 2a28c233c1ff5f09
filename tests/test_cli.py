"""The real `forgetlab` entry point: a full run on the tiny model, determinism, interrupt + resume, bad input."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import call_main, run_cli

FAST = ["--task", "facts:people", "--task", "facts:elements", "--epochs", "2", "--lr", "1e-2",
        "--set", "data.facts.entities=2", "--set", "lora.rank=4", "--set", "lora.dropout=0",
        "--set", "landscape.iterations=4", "--set", "landscape.top_k=2", "--set", "landscape.batch_size=4"]


def only_run(root: Path) -> Path:
    runs = [p for p in root.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_full_run_writes_a_complete_run_directory(tiny_dir, tmp_path, capsys):
    r = run_cli("sequential", "--model", str(tiny_dir), "--out", str(tmp_path), *FAST)
    assert r.returncode == 0, r.stderr[-2000:]
    run = only_run(tmp_path)
    for name in ("config.yaml", "metrics.json", "accuracy_matrix.csv", "history.csv", "eigenvalues.csv",
                 "report.html", "accuracy_matrix.png", "loss.png", "eigenvalues.png"):
        assert (run / name).is_file(), name
    for task in ("facts-people", "facts-elements"):
        assert (run / "adapters" / task / "adapter_model.safetensors").is_file()
        meta = json.loads((run / "adapters" / task / "meta.json").read_text())
        assert meta["task"] == task.replace("-", ":") and meta["config"]["lora"]["rank"] == 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["stages"][0] == "before"
    rows = (run / "accuracy_matrix.csv").read_text().splitlines()
    assert rows[0] == "stage,facts:people/seen,facts:people/held_out,facts:elements/seen,facts:elements/held_out"
    assert (run / "retention.csv").read_text().startswith(
        "stage,general_accuracy,general_retention,task1_accuracy,task1_retention")
    assert len(rows) == 4  # header + before + one row per task
    assert len(metrics["estimates"]) == 1 and metrics["estimates"][0]["task"] == "facts:people"
    assert len(metrics["checkpoints"][0]["eigenvalues"]) == 2
    for c in metrics["checkpoints"]:  # each stage's time split three ways, and the Lanczos iterations it took
        assert c["train_seconds"] > 0 and c["eval_seconds"] > 0 and c["landscape_seconds"] > 0
        assert 2 < c["lanczos_iterations"] <= 4
    for table in ("Accuracy matrix", "BWT", "½λ_max||Δθ||²", "measured ΔL", "spike factor", "general retention",
                  "task-1 retention"):
        assert table in r.stdout
    listing = call_main(capsys, "runs", "--out", str(tmp_path))
    assert listing.returncode == 0 and "sequential" in listing.stdout
    check_predictions_and_flips(run, metrics)
    page = (run / "report.html").read_text()  # one page that stands alone: settings, pictures inlined, definitions
    pictures = re.findall(r"<img src='([^']*)'", page)
    assert len(pictures) >= 3 and all(src.startswith("data:image/png;base64,") for src in pictures)
    assert "<h2>Settings</h2>" in page and "<td>strategy.name</td><td>naive</td>" in page
    assert "<h2>Definitions</h2>" in page and "<dt>BWT</dt>" in page and "<dt>bound</dt>" in page
    assert "Items that changed at each boundary" in " ".join(r.stdout.split())


def check_predictions_and_flips(run: Path, metrics: dict) -> None:
    """predictions.csv holds each item at each stage, agrees with the accuracy matrix, and the flips at each
    boundary are its differences: (wrong → right) − (right → wrong) = the accuracy change × items."""
    import csv

    rows = list(csv.DictReader((run / "predictions.csv").open()))
    stages, tasks = metrics["stages"], metrics["tasks"]
    counted = 0
    for k, stage in enumerate(stages):
        for task in tasks:
            for split in metrics["splits"]:
                mine = [r for r in rows if (r["stage"], r["task"], r["split"]) == (stage, task, split)]
                n = metrics["accuracy"][k][task][split]["n"]
                assert [int(r["item"]) for r in mine] == list(range(n))
                assert sum(int(r["correct"]) for r in mine) / n == pytest.approx(
                    metrics["accuracy"][k][task][split]["accuracy"])
                for r in mine:  # the letter is the best option, and the log-probabilities a distribution
                    logp = [float(x) for x in r["option_logprobs"].split(";")]
                    assert "ABCD"[logp.index(max(logp))] == r["answer"]
                    assert sum(math.exp(x) for x in logp) == pytest.approx(1, abs=1e-3)
                if k:
                    flip = next(f for f in metrics["flips"] if (f["stage"], f["task"], f["split"]) == (stage, task, split))
                    before = {int(r["item"]): int(r["correct"]) for r in rows if (r["stage"], r["task"], r["split"])
                              == (stages[k - 1], task, split)}
                    assert flip["lost"] == [int(r["item"]) for r in mine if before[int(r["item"])] and not int(r["correct"])]
                    change = metrics["accuracy"][k][task][split]["accuracy"] - metrics["accuracy"][k - 1][task][split]["accuracy"]
                    assert len(flip["gained"]) - len(flip["lost"]) == round(change * n)
                    counted += len(flip["gained"]) + len(flip["lost"])
    assert counted > 0  # the run changed some answers (lr 1e-2 on the tiny model)
    page = (run / "report.html").read_text()
    assert "Items that changed at each boundary" in page and "flipped items each way" in page


def test_same_seed_same_numbers_through_the_cli(tiny_dir, tmp_path):
    for name in ("a", "b"):
        r = run_cli("sequential", "--model", str(tiny_dir), "--out", str(tmp_path / name), "--no-landscape", *FAST)
        assert r.returncode == 0, r.stderr[-2000:]
    a, b = (json.loads((only_run(tmp_path / n) / "metrics.json").read_text()) for n in ("a", "b"))
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert a["accuracy"] == b["accuracy"]


def test_interrupt_then_resume(tiny_dir, tmp_path):
    exe = Path(sys.executable).with_name("forgetlab")
    args = [str(exe), "sequential", "--model", str(tiny_dir), "--out", str(tmp_path), "--no-landscape", *FAST,
            "--epochs", "40"]
    # A shell running us in the background ignores SIGINT, and children inherit that: restore Ctrl-C's default.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    deadline = time.time() + 300
    while time.time() < deadline and not list(tmp_path.glob("*/metrics.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and "Traceback" not in err
    run = only_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and len(metrics["stages"]) < 3
    r = run_cli("sequential", "--resume", str(run))
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "complete" and len(metrics["stages"]) == 3


def test_resume_from_a_finished_task_gives_the_same_result(tiny_dir, tmp_path):
    r = run_cli("sequential", "--model", str(tiny_dir), "--out", str(tmp_path / "full"), "--no-landscape", *FAST)
    assert r.returncode == 0, r.stderr[-2000:]
    full = only_run(tmp_path / "full")
    # Cut the run back to "task 1 finished", as Ctrl-C during task 2 leaves it, then resume.
    cut = tmp_path / "cut" / full.name
    import shutil

    shutil.copytree(full, cut)
    shutil.rmtree(cut / "adapters" / "facts-elements")
    m = json.loads((cut / "metrics.json").read_text())
    n1 = sum(h["task"] == "facts:people" for h in m["history"])
    m.update(status="interrupted", stages=m["stages"][:2], accuracy=m["accuracy"][:2], history=m["history"][:n1],
             checkpoints=m["checkpoints"][:1], retention=m["retention"][:2], method_info=m["method_info"][:1])
    (cut / "metrics.json").write_text(json.dumps(m))
    r = run_cli("sequential", "--resume", str(cut))
    assert r.returncode == 0, r.stderr[-2000:]
    resumed = json.loads((cut / "metrics.json").read_text())
    original = json.loads((full / "metrics.json").read_text())
    assert resumed["accuracy"] == original["accuracy"]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in original["history"]]


@pytest.mark.parametrize("args,message", [
    (["sequential", "--task", "wiki:cats"], "unknown source 'wiki'"),
    (["sequential", "--task", "facts:planets"], "valid domains: people, elements, festivals"),
    (["sequential", "--set", "lora.rank=0"], "lora.rank: Input should be greater than 0"),
    (["sequential", "--set", "train.bogus=1"], "unknown key 'train.bogus'"),
    (["sequential", "--config", "no-such.yaml"], "no-such.yaml not found"),
    (["sequential", "--task", "mmlu:astronomy"], "mmlu:astronomy"),
    (["sequential", "--task", "mmlu:astronomy", "--mmlu-dir", "/no/such/dir"], "MMLU directory /no/such/dir not found"),
    (["sequential", "--task", "file:/no/such.jsonl"], "data file /no/such.jsonl not found"),
    (["sequential", "--strategy", "magic"], "valid strategies: naive"),
    (["compare", "--strategies", "naive,magic"], "unknown strategy 'magic'; valid strategies: naive, replay"),
    (["compare", "--seeds", "0,x"], "--seeds 0,x: expected a comma-separated list"),
    (["compare", "--strategies", "naive,naive"], "strategies: Value error, an entry is listed twice"),
    (["compare", "--resume", "/no/such/dir"], "not a run directory"),
    (["sequential", "--set", "strategy.replay.schedule=[100/0]"], "schedule share must be in [0, 1)"),
    (["sequential", "--set", "strategy.kl.reference=teacher"], "strategy.kl.reference"),
    (["sequential", "--preset", "huge"], "invalid choice"),
    (["sequential", "--epochs", "x"], "invalid int value"),
    (["sequential", "--resume", "/no/such/run"], "not a run directory"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = call_main(capsys, *args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())  # nothing created


def test_malformed_file_names_line_and_field(tmp_path, capsys):
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"instruction": "a", "response": "b"}\n{"instruction": "c", "response": 3}\n')
    r = call_main(capsys, "sequential", "--task", f"file:{bad}", "--out", str(tmp_path / "runs"))
    assert r.returncode == 2
    assert f"{bad} line 2: field 'response' must be a non-empty string" in r.stderr


def test_bad_lora_target_lists_the_model_layers(tiny_dir, tmp_path, capsys):
    r = call_main(capsys, "sequential", "--model", str(tiny_dir), "--out", str(tmp_path), "--set", "lora.targets=[qkv]",
                  *FAST[:4])
    assert r.returncode == 2 and "its linear layers are: down_proj, gate_proj" in r.stderr


def test_help_explains_config_keys(capsys):
    r = call_main(capsys, "sequential", "--help")
    assert r.returncode == 0
    assert "train.lr" in r.stdout and "peak learning rate" in r.stdout and "--resume" in r.stdout


def test_log_tensorboard_writes_the_loss_curve_and_each_stage(tiny_dir, tmp_path, capsys):
    """`--log tensorboard`: event files in the run directory that TensorBoard's own reader reads back: one loss point
    per training step, each stage's accuracy per task and split, the summary numbers and tables."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = call_main(capsys, "sequential", "--model", str(tiny_dir), "--out", str(tmp_path), "--no-landscape",
                  "--log", "tensorboard", *FAST)
    assert r.returncode == 0, r.stderr
    run = only_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    loss = events.Scalars("train/loss")
    assert [round(e.value, 4) for e in loss] == [round(h["loss"], 4) for h in metrics["history"]]
    assert [e.step for e in loss] == [h["global_step"] for h in metrics["history"]]
    people = events.Scalars("eval/facts:people/seen")
    assert [e.value for e in people] == pytest.approx([row["facts:people"]["seen"]["accuracy"]
                                                       for row in metrics["accuracy"][1:]])
    assert events.Scalars("summary/seen/bwt")[0].value == pytest.approx(metrics["metrics"]["seen"]["bwt"])
    assert any("summary" in tag for tag in events.Tags()["tensors"])  # the final tables, as text


@pytest.mark.parametrize("kind", ["wandb", "mlflow"])
def test_log_wandb_and_mlflow_offline_or_one_line_without_the_extra(tiny_dir, tmp_path, capsys, kind):
    """wandb (offline) and MLflow (a file store) log into the run directory where the extra is installed; where it
    is not, `--log` says so in one line, exit 2, before anything trains."""
    import importlib.util

    r = call_main(capsys, "sequential", "--model", str(tiny_dir), "--out", str(tmp_path), "--no-landscape",
                  "--log", kind, *FAST)
    if importlib.util.find_spec(kind) is None:
        assert r.returncode == 2 and f"the {kind} package is not installed" in r.stderr and ".[" + kind in r.stderr
        assert "\n" not in r.stderr.strip() and "Traceback" not in r.stderr
        assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # no run directory left behind
        return
    assert r.returncode == 0, r.stderr
    run = only_run(tmp_path)
    history = json.loads((run / "metrics.json").read_text())["history"]
    if kind == "wandb":
        assert list((run / "wandb").glob("offline-run-*"))
    else:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{(run / 'mlflow.db').resolve()}")
        [found] = client.search_runs([client.get_experiment_by_name("forgetlab").experiment_id])
        assert len(client.get_metric_history(found.info.run_id, "train/loss")) == len(history)
