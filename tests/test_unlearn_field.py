"""The field's measures in `forgetlab unlearn` on a tiny random model: TOFU-layout files read as they are, the new
columns in unlearn.csv and the table, and the reference comparisons that can be checked by hand — a model
compared with itself has forget quality 1 (the same truth ratios: KS p = 1) and privleak 0 (the same AUC)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import call_main

TOFU = Path(__file__).resolve().parents[1] / "examples" / "tofu" / "science_qa.jsonl"


def test_tofu_layout_is_read_with_its_paraphrase_and_perturbed_answers():
    from forgetlab.data.unlearn import read_facts

    facts = read_facts(str(TOFU)).facts
    assert len(facts) >= 10
    assert all(f.paraphrased and len(f.perturbed) == 3 and f.wrong == f.perturbed for f in facts)
    assert facts[0].answer == "Mars is known as the Red Planet." and facts[0].paraphrased == "The Red Planet is Mars."


def test_a_bad_perturbed_answer_field_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q?", "answer": "a", "perturbed_answer": [1, 2]}) + "\n")
    r = call_main(capsys, "unlearn", "--forget", str(bad), "--model", "nowhere")
    assert r.returncode == 2 and "'perturbed_answer' must be a list of non-empty strings" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unlearn_reports_the_field_measures_against_a_reference(tiny_dir, tmp_path, capsys):
    lines = TOFU.read_text().splitlines()
    forget, holdout = tmp_path / "forget.jsonl", tmp_path / "holdout.jsonl"
    forget.write_text("\n".join(lines[:6]) + "\n")
    holdout.write_text("\n".join(lines[6:]) + "\n")
    r = call_main(capsys, "unlearn", "--model", str(tiny_dir), "--out", str(tmp_path / "runs"), "--save", "none",
                  "--forget", str(forget), "--holdout", str(holdout), "--lora-rank", "4", "--epochs", "1",
                  "--set", "general.enabled=false", "--set", "guard.enabled=false", "--set", "train.batch_size=4",
                  "--set", f"guard.reference={tiny_dir}", "--set", "eval.retain_shots=2")
    assert r.returncode == 0, r.stderr
    run = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    rows = list(csv.DictReader((run / "unlearn.csv").open()))
    start, last = rows[0], rows[-1]
    assert 0 <= float(start["retain_kshot"]) <= 1 and last["retain_kshot"] != ""  # 2-shot retain accuracy
    for key in ("forget_prob", "forget_rouge", "forget_tr", "retain_prob", "retain_rouge", "retain_tr", "utility",
                "forget_quality", "mink_auc", "minkpp_auc", "privleak"):
        assert start[key] != "" and last[key] != "", key
    # before unlearning the model is its own reference: the same truth ratios, the same membership AUC
    assert float(start["forget_quality"]) == pytest.approx(1.0)
    assert float(start["privleak"]) == pytest.approx(0.0, abs=1e-9)
    assert 0 < float(start["forget_tr"]) <= 1 and 0 <= float(start["retain_tr"]) < 1
    assert 0 <= float(start["mink_auc"]) <= 1 and 0 <= float(start["utility"]) <= 1
    # model utility: the harmonic mean of the three retain numbers, as the row holds them
    three = [float(start[k]) for k in ("retain_prob", "retain_rouge", "retain_tr")]
    expected = 0.0 if min(three) == 0 else 3 / sum(1 / v for v in three)
    assert float(start["utility"]) == pytest.approx(expected, rel=1e-6)
    state = json.loads((run / "metrics.json").read_text())
    assert len(state["reference"]["forget_tr_items"]) == 6 and state["sets"]["holdout"]["facts"] == len(lines) - 6
    out = " ".join(r.stdout.split())
    assert "The field's measures" in out and "privleak" in out


def test_answer_losses_line_up_with_each_answer_scored_alone(tiny, tokenizer):
    """One batched pass over answer, paraphrase and wrong answers gives each fact the nll its answers get alone;
    the probability is TOFU's plain one for QA facts and normalised over the choices for MCQ facts."""
    from forgetlab.data.unlearn import Fact
    from forgetlab.evaluate import answer_nlls, qa_rows
    from forgetlab.metrics import tofu
    from forgetlab.recipes.unlearn_scores import answer_losses, probability, truth_ratios

    qa = Fact("a/0", "Which planet is red?", "Mars is red.", paraphrased="It is Mars.",
              perturbed=("Venus is red.", "Saturn is red."), wrong=("Venus is red.", "Saturn is red."))
    mcq = Fact("b/0", "What do bees make?", "honey", ("milk", "honey", "silk"), 1, wrong=("milk", "silk"))
    losses = answer_losses(tiny, tokenizer, [qa, mcq], 256)
    alone = lambda q, a: answer_nlls(tiny, tokenizer, qa_rows(tokenizer, [(q, a)]))[0]
    assert losses[0]["answer"] == pytest.approx(alone(qa.question, "Mars is red."), abs=1e-5)
    assert losses[0]["correct"] == pytest.approx(alone(qa.question, "It is Mars."), abs=1e-5)
    assert losses[0]["wrong"] == pytest.approx([alone(qa.question, w) for w in qa.perturbed], abs=1e-5)
    assert losses[1]["correct"] == losses[1]["answer"] and len(losses[1]["wrong"]) == 2
    assert truth_ratios(losses)[0] == pytest.approx(tofu.truth_ratio(losses[0]["correct"], losses[0]["wrong"]))
    expected = (tofu.probability(losses[0]["answer"])
                + tofu.normalised_probability(losses[1]["answer"], losses[1]["wrong"])) / 2
    assert probability([qa, mcq], losses) == pytest.approx(expected)


def test_membership_reads_muse_texts_and_a_set_against_itself_is_a_coin_flip(tiny, tokenizer):
    """MUSE's raw layout ({"text"}) is scored on its tokens; the same facts as members and non-members give every
    (non-member, member) pair its mirror image, so the AUC is exactly 0.5."""
    from forgetlab.data.unlearn import read_facts
    from forgetlab.recipes.unlearn_scores import membership, scorable

    texts = scorable(read_facts(str(TOFU.with_name("science_text.jsonl"))))
    assert len(texts) == 6 and all(f.text and not f.question for f in texts)
    same = membership(tiny, tokenizer, texts, texts, 256)
    assert same == {"mink_auc": pytest.approx(0.5), "minkpp_auc": pytest.approx(0.5)}
    qa = scorable(read_facts(str(TOFU)))
    mixed = membership(tiny, tokenizer, texts, qa, 256)
    assert all(0 <= v <= 1 for v in mixed.values())


def test_texts_the_model_was_trained_on_read_as_members(tiny, tokenizer):
    """The orientation through the model: after a few steps on three texts, those texts score as members against
    three it never saw (min-k AUC above 0.5, privleak below 0 against a coin-flip reference)."""
    from forgetlab.batching import collate, encode_text
    from forgetlab.data.unlearn import Fact
    from forgetlab.losses import nll
    from forgetlab.metrics import mia
    from forgetlab.recipes.unlearn_scores import membership

    seen = [Fact(f"s/{i}", text=t) for i, t in enumerate(["the red fox jumps over the lazy dog every morning",
                                                          "seven blue whales sing under the cold northern sea",
                                                          "a quiet library keeps old maps of forgotten towns"])]
    unseen = [Fact(f"u/{i}", text=t) for i, t in enumerate(["green apples fall from the tall tree in autumn",
                                                            "the train leaves the station at nine sharp",
                                                            "bright stars shine above the desert at night"])]
    batch = collate([encode_text(tokenizer, f.text, 64) for f in seen], tokenizer.pad_token_id)
    opt = torch.optim.AdamW(tiny.parameters(), lr=1e-2)
    tiny.train()
    for _ in range(30):
        opt.zero_grad()
        nll(tiny, batch).backward()
        opt.step()
    tiny.eval()
    scores = membership(tiny, tokenizer, seen, unseen, 64)
    assert scores["mink_auc"] > 0.5 and scores["minkpp_auc"] > 0.5
    assert mia.privleak(scores["mink_auc"], 0.5) < 0
