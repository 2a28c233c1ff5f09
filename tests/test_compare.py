"""`forgetlab compare` through the real entry point on the tiny model: the table, the report, failures isolated."""

import csv
import io
import json
from pathlib import Path

from rich.console import Console

from forgetlab.config import CompareConfig, build_config
from forgetlab.recipes import compare

from .browser import open_report
from .conftest import run_cli

FAST = ["--task", "facts:people", "--task", "facts:elements", "--epochs", "1", "--lr", "1e-2",
        "--set", "data.facts.entities=2", "--set", "lora.rank=4", "--set", "lora.dropout=0",
        "--set", "general.max_new_tokens=3"]


def test_compare_writes_one_table_and_one_report(tiny_dir, tmp_path, browser):
    r = run_cli("compare", "--model", str(tiny_dir), "--out", str(tmp_path), *FAST,
                "--strategies", "naive,joint", "--seeds", "0,1", "--cpus-per-run", "1", "--log", "tensorboard")
    assert r.returncode == 0, r.stderr[-2000:]
    out = next(p for p in tmp_path.iterdir() if p.is_dir())
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [row["strategy"] for row in rows] == ["naive", "joint"]
    assert all(row["runs"] == "2/2" for row in rows)
    naive = rows[0]
    assert float(naive["bwt_vs_naive"]) == 1.0 or naive["bwt_vs_naive"] == ""
    assert float(naive["trainable_params_mean"]) > 0 and float(naive["peak_memory_mb_mean"]) > 0
    assert rows[1]["bwt_mean"] == ""  # joint has no sequence, so no BWT
    for name in ("comparison.md", "report.html", "stability_plasticity.png", "losses.png", "compare.json"):
        assert (out / name).is_file(), name
    page = (out / "report.html").read_text()
    assert "runs/" in page and "/report.html'><img src='data:image/png;base64," in page and "Stability" in page
    assert "<h2>Definitions</h2>" in page and "<td>strategies</td><td>naive, joint</td>" in page
    assert len(open_report(browser, out / "report.html")["images"]) >= 2 + 2  # its plots and each run's matrix
    for run in (out / "runs").iterdir():  # --log reaches every run of the comparison
        if run.is_dir():
            assert list((run / "tb").glob("events.out.tfevents.*")), run
    assert "Comparison" in r.stdout and "joint" in r.stdout
    assert len(list((out / "runs").glob("*-s1"))) == 2
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["joint-s0.log", "joint-s1.log", "naive-s0.log",
                                                                  "naive-s1.log"]  # each run's output, kept


def test_strategies_with_settings_of_their_own_run_side_by_side(tiny_dir, tmp_path):
    """'ewc:lam=0' must train exactly like naive (a zero penalty), 'ewc:lam=1e6' differently from the second task on."""
    r = run_cli("compare", "--model", str(tiny_dir), "--out", str(tmp_path), *FAST, "--set", "general.enabled=false",
                "--strategies", "naive,ewc:lam=0,ewc:lam=1e6", "--seeds", "0", "--cpus-per-run", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    out = next(p for p in tmp_path.iterdir() if p.is_dir())
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [row["strategy"] for row in rows] == ["naive", "ewc:lam=0", "ewc:lam=1e6"]
    result = {r["strategy"]: r for r in json.loads((out / "compare.json").read_text())["runs"]}
    metrics = {s: json.loads((Path(result[s]["run_dir"]) / "metrics.json").read_text()) for s in result}
    losses = {s: [h["loss"] for h in m["history"]] for s, m in metrics.items()}
    assert losses["ewc:lam=0"] == losses["naive"] and metrics["ewc:lam=0"]["accuracy"] == metrics["naive"]["accuracy"]
    first = sum(h["task"] == "facts:people" for h in metrics["naive"]["history"])
    assert losses["ewc:lam=1e6"][:first] == losses["naive"][:first]
    assert losses["ewc:lam=1e6"][first:] != losses["naive"][first:], "the penalty acts on the second task"
    assert "lam: 1000000.0" in (out / "configs" / "ewc-lam-1e6-s0.yaml").read_text()
    assert (out / "logs" / "ewc-lam-0-s0.log").is_file()


def test_a_failing_strategy_is_reported_and_the_others_finish(tiny_dir, tmp_path, monkeypatch):
    real = compare.child_config

    def broken_for_kl(cfg, out, strategy, seed):
        child = real(cfg, out, strategy, seed)
        if strategy == "kl":  # a real failure in the child process: its model directory does not exist
            return child.model_copy(update={"model": child.model.model_copy(update={"name": str(tmp_path / "gone")})})
        return child

    monkeypatch.setattr(compare, "child_config", broken_for_kl)
    cfg = build_config(CompareConfig, {"tasks": ["facts:people", "facts:elements"], "strategies": ["kl", "naive"],
                                       "model": {"name": str(tiny_dir)}, "train": {"epochs": 1},
                                       "data": {"facts": {"entities": 2}}, "lora": {"rank": 4},
                                       "general": {"enabled": False}, "run": {"root": str(tmp_path / "runs")},
                                       "executor": {"cpus_per_run": 1}})
    out = compare.run_compare(cfg, console=Console(file=io.StringIO(), width=200))
    result = json.loads((out / "compare.json").read_text())
    status = {r["strategy"]: r for r in result["runs"]}
    assert status["kl"]["status"] == "failed" and "not found" in status["kl"]["error"]
    assert status["naive"]["status"] == "complete"
    assert "not found" in (out / "comparison.md").read_text()
    # Resume reuses the finished run and retries the failed one.
    monkeypatch.setattr(compare, "child_config", real)
    compare.run_compare(cfg, resume=out, console=Console(file=io.StringIO(), width=200))
    result = json.loads((out / "compare.json").read_text())
    assert all(r["status"] == "complete" for r in result["runs"])
    assert len(list((out / "runs").glob("*-naive-s0"))) == 1
