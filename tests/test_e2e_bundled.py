"""End-to-end on the real bundled model (SmolLM2-135M-Instruct): learning and forgetting are visible."""

import json
from pathlib import Path

import pytest

from .conftest import run_cli

pytestmark = pytest.mark.slow


def test_two_facts_tasks_learn_then_forget(tmp_path):
    r = run_cli("sequential", "--task", "facts:people", "--task", "facts:elements", "--out", str(tmp_path),
                "--epochs", "8", "--lr", "5e-3", "--set", "data.facts.entities=4", "--set", "landscape.iterations=3",
                "--set", "landscape.top_k=2", "--set", "landscape.batch_size=2", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    m = json.loads((run / "metrics.json").read_text())
    people = [row["facts:people"]["seen"]["accuracy"] for row in m["accuracy"]]
    chance = m["accuracy"][0]["facts:people"]["seen"]["chance"]
    assert people[1] >= chance + 0.25, people  # learned, well above chance
    assert people[2] < people[1], people  # and partly forgotten after task 2
    assert m["metrics"]["seen"]["bwt"] < 0
    assert m["status"] == "complete" and m["estimates"][0]["lambda_max"] > 0
    for name in ("config.yaml", "accuracy_matrix.csv", "history.csv", "eigenvalues.csv", "report.html",
                 "adapters/facts-people/adapter_model.safetensors", "adapters/facts-elements/meta.json"):
        assert (run / name).is_file(), name


def test_compare_three_facts_tasks_naive_replay_kl(tmp_path):
    r = run_cli("compare", "--task", "facts:people", "--task", "facts:elements", "--task", "facts:festivals",
                "--strategies", "naive,replay,kl", "--seeds", "0", "--out", str(tmp_path), "--epochs", "4",
                "--lr", "1e-2", "--set", "data.facts.entities=2", "--set", "eval.batch_size=32", timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    out = next(p for p in tmp_path.iterdir() if p.is_dir())
    result = json.loads((out / "compare.json").read_text())
    assert [row["strategy"] for row in result["table"]] == ["naive", "replay", "kl"]
    assert all(run["status"] == "complete" for run in result["runs"])
    for run in result["runs"]:
        m = json.loads((Path(run["run_dir"]) / "metrics.json").read_text())
        # The bundled base model answers every general question; each strategy learns each task above its start.
        assert m["diagnostics"]["general_accuracy"][0] == 1.0
        for k, task in enumerate(m["tasks"]):
            assert m["accuracy"][k + 1][task]["seen"]["accuracy"] > m["accuracy"][0][task]["seen"]["accuracy"], run
    naive = result["table"][0]
    assert naive["bwt"][0] < 0 and naive["base_retention"][0] < 1.0  # naive forgets, and loses general answers
    for name in ("comparison.csv", "comparison.md", "report.html", "stability_plasticity.png", "losses.png"):
        assert (out / name).is_file(), name
