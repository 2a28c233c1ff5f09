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
    import random

    import numpy as np
    import torch

    rng = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    theirs = lm_eval_scores(model, tok, [str(TASK)])
    assert theirs == {"forgetlab_science_mcq": pytest.approx(ours)}
    assert torch.equal(torch.get_rng_state(), rng[0]) and random.getstate() == rng[1]  # a run's RNG left alone
    assert (np.random.get_state()[1] == rng[2]).all()
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


def test_task_files_are_read_for_their_names_lm_eval_tags_and_groups_too(tmp_path):
    from forgetlab.config.core import lm_eval_tasks

    tagged = tmp_path / "a.yaml"
    tagged.write_text("task: my_task\nprocess_docs: !function utils.process_docs\n")
    group = tmp_path / "g.yaml"
    group.write_text("group: my_group\ntask: [my_task]\n")
    names, paths = lm_eval_tasks([str(tagged), str(group), "hellaswag"])
    assert names == ["my_task", "my_group", "hellaswag"] and paths == [str(tmp_path.resolve())]
    broken = tmp_path / "b.yaml"
    broken.write_text("task: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        lm_eval_tasks([str(broken)])
