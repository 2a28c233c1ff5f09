"""The benign-relearning attack (recipes/attacks.py): which texts count as benign, and a run on the tiny model whose
numbers follow from its own curves."""

from __future__ import annotations

import json

import pytest

from tests.conftest import call_main


def test_a_text_states_an_answer_only_as_a_whole_word():
    from forgetlab.recipes.attacks import comes_back, states

    assert states("The capital is Paris.", "Paris") and states("paris is big", "PARIS")
    assert not states("A Parisian cafe", "Paris") and not states("100 metres", "0")
    assert states("It boils at 0 degrees", "0") and states("solar energy comes from the Sun", "solar energy")
    assert comes_back(0.6, 0.2, 1.0) == pytest.approx(0.5) and comes_back(0.5, 0.5, 0.5) is None


def test_texts_that_state_a_forget_answer_are_left_out(tmp_path):
    from forgetlab.config import UnlearnConfig
    from forgetlab.errors import UserError
    from forgetlab.recipes.attacks import benign_texts
    from forgetlab.recipes.unlearn import fact_sets

    sets = fact_sets(UnlearnConfig())
    a = sets["forget"].facts[0].answer  # a built-in animals answer
    text = tmp_path / "text.jsonl"
    texts = [f"Something about {a} here.", f"Words like {a}ish.", "Zzyzx qwerty."]
    text.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")
    cfg = UnlearnConfig(relearn={"enabled": True, "file": str(text)})
    keep, dropped = benign_texts(fact_sets(cfg), cfg)
    assert (keep, dropped) == (texts[1:], 1)
    only = tmp_path / "only.jsonl"
    only.write_text(json.dumps({"text": f"It is {a}."}) + "\n")
    with pytest.raises(UserError, match="not benign"):
        benign_texts(sets, UnlearnConfig(relearn={"enabled": True, "file": str(only)}))


def test_unlearn_attacks_relearn_reports_best_over_its_own_curves(tiny_dir, tmp_path, capsys):
    r = call_main(capsys, "unlearn", "--model", str(tiny_dir), "--out", str(tmp_path), "--save", "none",
                  "--lora-rank", "4", "--epochs", "1", "--attacks", "relearn", "--set", "general.enabled=false",
                  "--set", "guard.enabled=false", "--set", "train.batch_size=16", "--set", "relearn.epochs=2",
                  "--set", "relearn.lrs=[0.001]")
    assert r.returncode == 0, r.stderr
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    state = json.loads((run / "metrics.json").read_text())
    rl = state["relearn"]
    curve, orig = rl["curves"]["unlearned"]["0.001"], rl["curves"]["original"]["0.001"]
    assert len(curve) == 3 and rl["unlearned"] == curve[0] == pytest.approx(state["final"]["forget_ll"])
    assert rl["unlearned_relearned"] == max(curve[1:]) and rl["original_relearned"] == max(orig[1:])
    gone = orig[0] - curve[0]
    assert rl["comes_back"] == (pytest.approx((max(curve[1:]) - curve[0]) / gone) if gone > 1e-9 else None)
    assert rl["texts"] + rl["left_out"] == state["sets"]["retain"]["facts"]  # the retain facts by default
    assert "Benign relearning attack" in " ".join(r.stdout.split()) and (run / "relearn.png").is_file()


def test_forgetlab_attack_on_a_saved_run_measures_the_saved_model(tiny_dir, tmp_path, capsys):
    r = call_main(capsys, "unlearn", "--model", str(tiny_dir), "--out", str(tmp_path / "runs"), "--save", "merged",
                  "--lora-rank", "4", "--epochs", "1", "--set", "general.enabled=false", "--set", "guard.enabled=false",
                  "--set", "train.batch_size=16")
    assert r.returncode == 0, r.stderr
    run = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    final = json.loads((run / "metrics.json").read_text())["final"]
    r = call_main(capsys, "attack", "--model", str(run), "--attacks", "relearn,quant", "--bits", "4",
                  "--set", "relearn.epochs=1", "--set", "relearn.lrs=[0.001]", "--set", "quant.group_size=16",
                  "--out", str(tmp_path / "attacks"))
    assert r.returncode == 0, r.stderr
    out = next(p for p in (tmp_path / "attacks").iterdir() if p.is_dir())
    state = json.loads((out / "metrics.json").read_text())
    assert state["status"] == "complete" and state["attacks"] == ["relearn", "quant"]
    full = {(q["model"], q["bits"]): q for q in state["quant"]["rows"]}
    assert set(full) == {("original", "full"), ("original", 4), ("unlearned", "full"), ("unlearned", 4)}
    # the saved merged model is the run's kept one: the attack starts where the run ended
    assert full[("unlearned", "full")]["forget_acc"] == pytest.approx(final["forget_ll"], abs=1e-6)
    assert state["relearn"]["unlearned"] == pytest.approx(final["forget_ll"], abs=1e-6)
    text = " ".join(r.stdout.split())
    assert "Benign relearning attack" in text and "Quantization attack" in text and (out / "report.html").is_file()
    # the attacked model's own scores, the field's measures included, are the kept step's
    assert "The model attacked, as it is" in text and state["reference_model"] is None
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "<dt>comes back</dt>" in page and "<td>attacks</td>" in page
    for key in ("forget_ll", "retain_ll", "forget_prob", "forget_tr", "retain_prob", "utility"):
        assert state["scores"][key] == pytest.approx(final[key], abs=1e-4), key

    # `forgetlab rtt` on the same run reports them too, beside RTT
    r = call_main(capsys, "rtt", "--model", str(run), "--lrs", "0.001", "--epochs", "1", "--holdout-splits", "1",
                  "--out", str(tmp_path / "rtt"))
    assert r.returncode == 0, r.stderr
    rtt = json.loads(next(p for p in (tmp_path / "rtt").iterdir() if p.is_dir()).joinpath("metrics.json").read_text())
    for key in ("forget_ll", "retain_ll", "forget_tr", "utility"):
        assert rtt["scores"][key] == pytest.approx(final[key], abs=1e-4), key
    assert rtt["rtt"]["unlearned"] is not None and "The model attacked, as it is" in " ".join(r.stdout.split())


def test_forgetlab_attack_bad_input_is_one_line(tiny_dir, tmp_path, capsys):
    for args, message in ((["--model", str(tmp_path / "nope"), "--attacks", "quant"], "not a directory"),
                          (["--model", str(tiny_dir), "--attacks", "quant"], "--forget MCQ_FILE is needed"),
                          (["--model", str(tiny_dir), "--attacks", "hack"], "unknown attack hack")):
        r = call_main(capsys, "attack", *args, "--out", str(tmp_path / "runs"))
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
