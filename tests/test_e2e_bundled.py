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


def test_compare_three_facts_tasks_naive_and_kl(tmp_path):
    r = run_cli("compare", "--task", "facts:people", "--task", "facts:elements", "--task", "facts:festivals",
                "--strategies", "naive,kl", "--seeds", "0", "--out", str(tmp_path), "--epochs", "4",
                "--lr", "1e-2", "--set", "data.facts.entities=2", "--set", "eval.batch_size=32", timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    out = next(p for p in tmp_path.iterdir() if p.is_dir())
    result = json.loads((out / "compare.json").read_text())
    assert [row["strategy"] for row in result["table"]] == ["naive", "kl"]
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


def test_two_sessions_keep_the_first_and_export_answers_like_the_server(tmp_path):
    from transformers import AutoModelForCausalLM

    from forgetlab.sessions.holder import Loaded, ModelHolder
    from forgetlab.sessions.manage import loader
    from forgetlab.sessions.store import Store

    examples = Path(__file__).parents[1] / "examples" / "sessions"
    home = ["--assistant", "msu", "--home", str(tmp_path)]
    for name in ("cs_dept.json", "housing.json"):  # the files ask every fact twice; the plain mechanism suffices
        r = run_cli("session", "train", str(examples / name), *home, "--rephrase", "0", "--distill", "0", "--anchor", "0",
                    "--replay", "0.2", timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
    store = Store(tmp_path, "msu")
    first = json.loads((store.session_dir(1) / "metrics.json").read_text())
    second = json.loads((store.session_dir(2) / "metrics.json").read_text())
    base_f1, after_2 = first["before"]["f1"], second["retention"]["1"]["f1"]
    assert first["retention"]["1"]["f1"] >= base_f1 + 0.25, first  # session 1 learned its questions
    assert after_2 >= base_f1 + 0.2, (base_f1, after_2)  # and still answers them after session 2
    assert second["retention"]["2"]["f1"] >= second["before"]["f1"] + 0.2
    assert first["before"]["general"] == 1.0  # the base model answers every general question
    listing = run_cli("session", "list", *home)
    assert "after 2" in listing.stdout and "housing.json" in listing.stdout

    # The export is a plain HF model that answers like the served session.
    r = run_cli("session", "export", *home, "--merged", str(tmp_path / "export"))
    assert r.returncode == 0, r.stderr[-2000:]
    served = ModelHolder(loader(store))
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    plain = ModelHolder(lambda: Loaded(exported, served.current.tok, "msu", None, 0.0))
    for question in ("Who chairs the computer science department?", "When is move-in day for first-year students?"):
        messages = [{"role": "user", "content": question}]
        assert plain.complete(messages, max_tokens=24).text == served.complete(messages, max_tokens=24).text
