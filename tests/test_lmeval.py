"""lm-evaluation-harness as the general score (lmeval.py, the lm-eval extra): on a local task file, offline, its
accuracy for a saved merged model equals forgetlab's own option log-likelihood accuracy on the same facts."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "examples" / "lm_eval" / "science_mcq.yaml"

lm_eval = pytest.importorskip("lm_eval", reason="the lm-eval extra is not installed (make setup installs it)")


def test_lm_eval_scores_a_saved_merged_model_as_forgetlab_does(tiny_dir, tmp_path, capsys, monkeypatch):
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forgetlab.data.unlearn import read_facts
    from forgetlab.evaluate import mcq_option_logprobs
    from forgetlab.lmeval import lm_eval_scores
    from forgetlab.metrics.unlearning import share_correct
    from tests.conftest import call_main

    monkeypatch.chdir(ROOT)  # the task's data path is relative to the repository, as lm-eval reads it
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    r = call_main(capsys, "unlearn", "--model", str(tiny_dir), "--out", str(tmp_path), "--save", "merged",
                  "--lora-rank", "4", "--epochs", "1", "--set", "guard.enabled=false", "--set", "train.batch_size=16",
                  "--set", f"general.lm_eval=[{TASK}]")
    assert r.returncode == 0, r.stderr
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    model = AutoModelForCausalLM.from_pretrained(run / "model").eval()
    tok = AutoTokenizer.from_pretrained(run / "model")
    items = read_facts(str(ROOT / "examples" / "lm_eval" / "science_mcq.jsonl")).mcq()
    ours = share_correct(mcq_option_logprobs(model, tok, items), [it.answer for it in items])
    theirs = lm_eval_scores(model, tok, [str(TASK)])
    assert theirs == {"forgetlab_science_mcq": pytest.approx(ours)}
    # the run's general score at the kept step is that same task on the same weights
    state = json.loads((run / "metrics.json").read_text())
    assert state["final"]["general"] == pytest.approx(ours)


def test_unknown_tasks_and_files_are_one_line(tiny_dir, tmp_path, capsys):
    from tests.conftest import call_main

    for value, message in ((str(tmp_path / "none.yaml"), "task file"), ("no_such_task_xyz", "unknown task")):
        r = call_main(capsys, "unlearn", "--model", str(tiny_dir), "--out", str(tmp_path / "runs"),
                      "--set", f"general.lm_eval=[{value}]", "--set", "train.epochs=1")
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
