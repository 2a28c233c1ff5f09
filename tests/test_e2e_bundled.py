"""End-to-end on the real bundled model (SmolLM2-135M-Instruct): learning and forgetting are visible."""

import json
from pathlib import Path

import pytest

from .conftest import run_cli

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]


def test_two_facts_tasks_learn_then_forget(tmp_path):
    r = run_cli("sequential", "--task", "facts:people", "--task", "facts:elements", "--out", str(tmp_path),
                "--epochs", "8", "--lr", "5e-3", "--set", "data.facts.entities=2", "--set", "landscape.iterations=3",
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


def test_two_sessions_on_one_phrasing_per_fact_keep_what_they_learned(tmp_path):
    """The realistic FAQ files (one question per fact, 22 each), default settings, recall checked on their paraphrase
    files: the first two rows of the README's measured table (session 3 runs the same code as session 2 and took
    another 7 minutes; the README's third row was measured by hand). About 12 minutes on 2 cores. A first version
    trained the first 11 facts of each file to save time; on 11 questions one answer moves recall by 0.09 and
    retention fell to 0.67 of session 1's after session 3, where the whole files keep at least 0.82 of every
    session's."""
    from transformers import AutoModelForCausalLM

    from forgetlab.sessions.holder import Loaded, ModelHolder
    from forgetlab.sessions.manage import loader
    from forgetlab.sessions.store import Store

    examples = Path(__file__).parents[1] / "examples" / "sessions"
    home = ["--assistant", "msu", "--home", str(tmp_path)]
    for name in ("cs_faq", "housing_faq"):
        r = run_cli("session", "train", str(examples / f"{name}.json"), "--heldout",
                    str(examples / f"{name}_paraphrases.json"), *home, timeout=1200)
        assert r.returncode == 0, r.stderr[-3000:]
    store = Store(tmp_path, "msu")
    metrics = [json.loads((store.session_dir(k) / "metrics.json").read_text()) for k in (1, 2)]
    recall = [[m["retention"][str(j)]["contains"] for j in range(1, k + 2)] for k, m in enumerate(metrics)]
    own = [recall[k][k] for k in range(2)]  # each session's recall right after it was trained
    general = [m["general"] for m in metrics]
    seen = (recall, general)
    assert metrics[0]["before"]["general"] == 1.0, seen  # the base model answers every general question
    for k in range(2):
        assert own[k] >= metrics[k]["before"]["contains"] + 0.25, seen  # each session learned its facts
        for j in range(k):
            assert recall[k][j] >= 0.8 * own[j], seen  # and every earlier session keeps 80% of its recall
    # General answers: at least 24 of 28. Measured 26, 25 (and 26 after session 3): the target of 26 (0.9 of the
    # base) is missed after session 2, as the README says.
    assert min(general) >= 24 / 28, seen
    listing = run_cli("session", "list", *home)
    assert "after 2" in listing.stdout and "housing_faq.json" in listing.stdout

    # The export is a plain HF model that answers like the served session.
    r = run_cli("session", "export", *home, "--merged", str(tmp_path / "export"))
    assert r.returncode == 0, r.stderr[-2000:]
    served = ModelHolder(loader(store))
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    plain = ModelHolder(lambda: Loaded(exported, served.current.tok, "msu", None, 0.0))
    for question in ("Who chairs the computer science department?", "When is move-in day for first-year students?"):
        messages = [{"role": "user", "content": question}]
        assert plain.complete(messages, max_tokens=24).text == served.complete(messages, max_tokens=24).text


def test_chat_learns_facts_and_keeps_them_after_kill_9(tmp_path):
    """The bundled model, default learner settings: three facts, each stated once in a chat, are learned and
    checkpointed; the chat is killed with SIGKILL; a restarted scripted chat answers a question about each fact from
    the weights (a fresh process has no conversation to read it from), the first fact's "Who do I report to?" and a
    paraphrase. (With rehearsal of 4 other facts, "Who do I report to?" came out degenerate in 3 of 5 runs after a
    second fact; see the README.)"""
    import os
    import signal
    import subprocess
    import sys
    import time

    home = ["--assistant", "me", "--home", str(tmp_path)]
    exe = Path(sys.executable).with_name("forgetlab")
    proc = subprocess.Popen([str(exe), "chat", "--learn", *home], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    proc.stdin.write("My manager is Priya Velloso.\nMy dog's name is Biscotti.\nI live in Marrowick.\n")
    proc.stdin.flush()
    state = tmp_path / "me" / "online" / "state.json"
    deadline = time.time() + 600
    while time.time() < deadline and not (state.is_file() and json.loads(state.read_text())["turn"] >= 3):
        time.sleep(1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    turns = [json.loads(line) for line in (tmp_path / "me" / "online" / "turns.jsonl").read_text().splitlines()]
    assert [t["kind"] for t in turns] == ["fact"] * 3, turns
    assert all(t["updates"][0]["kept"] and t["updates"][0]["learned"] for t in turns), turns

    asked = ("Who do I report to?\n/reset\nWhat is the name of my manager?\n/reset\nWhat is my dog's name?\n/reset\n"
             "Where do I live?\n/facts\n")
    r = run_cli("chat", "--learn", *home, input=asked, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    answers = [line for line in r.stdout.splitlines() if line.startswith("me> ")]
    assert len(answers) == 4, r.stdout
    assert "Priya" in answers[0] and "Priya" in answers[1] and "Biscotti" in answers[2] and "Marrowick" in answers[3], \
        r.stdout
    assert "[1] My manager is Priya Velloso." in r.stdout


def test_unlearn_with_defaults_keeps_a_checkpoint_above_the_floors_and_saves_it(tmp_path):
    """`forgetlab unlearn --attacks rtt,quant` with its defaults (gd, rank-8 LoRA, the guards on) over the built-in
    known facts, RTT cut to one epoch at one learning rate and quantization to 4 bits: the run keeps an acceptable
    checkpoint, forget fell far enough while retain and general stayed above their floors, and the merged save
    scores like the kept checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forgetlab.data.unlearn import read_facts
    from forgetlab.evaluate import mcq_option_logprobs
    from forgetlab.metrics.unlearning import share_correct

    r = run_cli("unlearn", "--attacks", "rtt,quant", "--out", str(tmp_path), "--set", "rtt.lrs=[3e-4]",
                "--set", "rtt.epochs=1", "--set", "quant.bits=[4]", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    state = json.loads((run / "metrics.json").read_text())
    first, kept, guard = state["checks"][0], state["final"], state["guard"]
    assert first["forget_ll"] == 1.0 and first["retain_ll"] == 1.0  # the curated facts are all known at the start
    assert state["kept"]["acceptable"] is True and kept["step"] == state["kept"]["step"] > 0
    assert kept["forget_ll"] <= guard["target"] + 1e-9 or kept["forget_ll"] <= first["forget_ll"] - 0.3, kept
    assert kept["retain_ll"] >= guard["retain_min"] - 1e-9 and kept["general"] >= guard["general_min"] - 1e-9, kept
    assert state["chat_keys"] > 0 and kept["forget_qa"] <= 0.2, kept  # the chat answers forget too (method.chat_keys)
    assert guard["retain_min"] == 0.9 * first["retain_ll"] and guard["general_min"] == 0.8 * first["general"]
    checks = state["checks"]  # the retain term's weight after each check, by hand (guard.retain_gain, default 5)
    for before, row in zip(checks[:-1], checks[1:], strict=True):
        lost = max(0.0, first["retain_ll"] - before["retain_ll"]) / (0.1 * first["retain_ll"])
        assert row["retain_weight"] == pytest.approx(state["rc"] * (1 + guard["retain_gain"] * lost)), checks
    assert f"Kept step {kept['step']}" in " ".join(r.stdout.split())
    # the field's measures at the start and the kept step, and the quantization attack on the saved weights
    assert all(first[k] is not None and kept[k] is not None for k in ("forget_prob", "forget_tr", "utility"))
    quant = {(q["model"], q["bits"]): q for q in state["quant"]["rows"]}
    assert quant[("original", "full")]["forget_acc"] == 1.0
    assert quant[("unlearned", "full")]["forget_acc"] == pytest.approx(kept["forget_ll"], abs=1e-9)
    assert quant[("unlearned", 4)]["comes_back"] is not None and (run / "quant.png").is_file()
    rtt = state["rtt"]
    assert rtt["original"] == 1.0 and rtt["unlearned"] < rtt["original"] and 0 <= rtt["recovery_rate"] <= 2
    assert (run / "rtt.csv").is_file() and (run / "rtt.png").is_file() and "recovery rate" in r.stdout
    merged = AutoModelForCausalLM.from_pretrained(run / "model").eval()
    tok = AutoTokenizer.from_pretrained(run / "model")
    items = read_facts("builtin:animals").mcq()
    assert share_correct(mcq_option_logprobs(merged, tok, items), [it.answer for it in items]) == pytest.approx(
        kept["forget_ll"], abs=1e-9)


def test_the_shipped_unlearning_sets_are_known_to_the_bundled_model():
    """Every fact in examples/unlearn/ is one the bundled model picks by option log-likelihood (how they were
    chosen), at least 20 a set, and no two facts of a set share an answer (so no RTT split teaches another's)."""
    from forgetlab.config import ModelConfig
    from forgetlab.data.unlearn import read_facts
    from forgetlab.evaluate import mcq_option_logprobs
    from forgetlab.metrics.unlearning import share_correct
    from forgetlab.model import load_base

    model, tok = load_base(ModelConfig())
    files = sorted((ROOT / "examples" / "unlearn").glob("*.jsonl"))
    assert len(files) >= 17
    for path in files:
        items = read_facts(str(path)).mcq()
        answers = [it.options[it.answer].lower().removeprefix("the ").removeprefix("a ") for it in items]
        assert len(items) >= 20 and len(set(answers)) == len(answers), path
        assert share_correct(mcq_option_logprobs(model, tok, items), [it.answer for it in items]) == 1.0, path
