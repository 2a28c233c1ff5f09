"""The general score ("general answers kept") is one number: each workflow's own code path gives the same value for
the same model (the bundled one, which answers most of the built-in general questions, so a different budget or
question set would show)."""

import json
from pathlib import Path

import pytest

from .conftest import run_cli

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).parents[1] / "examples" / "sessions"


def test_the_general_score_is_the_same_in_sequential_sessions_unlearn_and_online(tmp_path):
    from forgetlab.batching import fixed_batches
    from forgetlab.config import ModelConfig, OnlineConfig, SequentialConfig, UnlearnConfig
    from forgetlab.model import load_base
    from forgetlab.online.learner import OnlineLearner
    from forgetlab.recipes.sequential import general_accuracy
    from forgetlab.recipes.unlearn import evaluate_unlearning, fact_sets
    from forgetlab.sessions.holder import Loaded, ModelHolder

    model, tok = load_base(ModelConfig())
    scores = {"sequential": general_accuracy(model, tok, SequentialConfig())}
    cfg = UnlearnConfig()
    sets = fact_sets(cfg)
    losses = {k: fixed_batches(sets[k].rows(tok, cfg.train.max_length), 16, tok.pad_token_id) for k in ("forget", "retain")}
    scores["unlearn"] = evaluate_unlearning(model, tok, sets, cfg, losses)["general"]
    learner = OnlineLearner(ModelHolder(lambda: Loaded(model, tok, "base", None, 0.0)), OnlineConfig(), tmp_path / "o")
    scores["online"] = learner.holder.update(lambda _: learner.measure(0))["general"]
    r = run_cli("session", "train", str(EXAMPLES / "cs_dept.json"), "--assistant", "a", "--home", str(tmp_path / "h"),
                "--epochs", "1", timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "h" / "a" / "sessions" / "001" / "metrics.json").read_text())
    scores["session"] = metrics["before"]["general"]  # scored on the base model, before the session trains
    assert len(set(scores.values())) == 1 and scores["sequential"] >= 0.8, scores
