"""The online learner as an editor: EasyEdit's metrics by hand, zsRE / CounterFact records, the router, the edit path
(later edit wins) on the tiny model, and `online-eval --edits` end to end on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from .test_cli import call_main
from .test_online import tiny_learner

ZSRE = [
    {"subject": "Watts Humphrey", "src": "What university did Watts Humphrey attend?", "alt": "University of Michigan",
     "rephrase": "What university did Watts Humphrey take part in?", "answers": ["Illinois Institute of Technology"],
     "loc": "nq question: who sang nice day for a white wedding", "loc_ans": "Billy Idol"},
    {"subject": "Lahti Town Hall", "src": "Who was the designer of Lahti Town Hall?", "alt": "Alfred Lahti",
     "rephrase": "The architect at Lahti Town Hall, who was that?", "loc": "nq question: where is the nile",
     "loc_ans": "Africa"},
    {"subject": "Lahti Town Hall", "src": "By which person Lahti Town Hall has been designed?", "alt": "Aki Kaurismäki",
     "rephrase": "Which is the architect of Lahti Town Hall?", "loc": "nq question: who wrote hamlet",
     "loc_ans": "Shakespeare"},
]
COUNTERFACT = {"case_id": 0, "requested_rewrite": {
    "prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux", "relation_id": "P103",
    "target_new": {"str": "English"}, "target_true": {"str": "French"}},
    "paraphrase_prompts": ["Danielle Darrieux spoke the language"],
    "neighborhood_prompts": ["The mother tongue of Léon Blum is", "The native language of Montesquieu is"]}


def test_token_accuracy_and_locality_agreement_by_hand():
    from forgetlab.metrics.editing import agreement, mean, token_accuracy

    assert token_accuracy([5, 9, 2], [5, 7, 2]) == pytest.approx(2 / 3)
    assert token_accuracy([1], [1]) == 1.0 and token_accuracy([], []) == 0.0
    assert agreement([3, 4, 4, 8], [3, 4, 1, 8]) == 0.75 and agreement([], []) == 1.0
    # a mean of per-edit means (EasyEdit's averaging), not a mean over all tokens: (1/2 + 1) / 2, not 2/3
    assert mean([token_accuracy([1, 2], [1, 3]), token_accuracy([4], [4])]) == 0.75
    with pytest.raises(ValueError):
        token_accuracy([1, 2], [1])


def test_teacher_forced_argmax_equals_a_plain_forward_on_hand_made_rows(tokenizer, tiny):
    """argmax_tokens over a padded batch of rows of different lengths equals, row by row, the argmax of one
    unpadded forward at positions len(prompt)-1 .. -2, and answer_labels are the target's tokens (EasyEdit's
    test_prediction_acc slicing)."""
    from forgetlab.evaluate import answer_labels, argmax_tokens
    from forgetlab.online.edits import teacher_forced_row

    pairs = [("What university did Watts Humphrey attend?", "University of Michigan"), ("Hi", "Alfred Lahti"),
             ("nq question: who sang nice day for a white wedding", "Billy Idol")]
    rows = [teacher_forced_row(tokenizer, p, a) for p, a in pairs]
    got, labels = argmax_tokens(tiny, tokenizer, rows), answer_labels(rows)
    for (p, a), pred, lab in zip(pairs, got, labels, strict=True):
        ids = tokenizer(p + " " + a, add_special_tokens=False)["input_ids"]
        n = len(tokenizer(p, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            logits = tiny(input_ids=torch.tensor([ids])).logits[0]
        assert pred == logits.argmax(-1).tolist()[n - 1:-1]
        assert lab == ids[n:] and tokenizer.decode(lab).strip() == a


def test_zsre_and_counterfact_records_read_as_they_are(tmp_path):
    from forgetlab.online.edits import read_edits

    z = tmp_path / "zsre.json"
    z.write_text(json.dumps(ZSRE))
    a, b, c = read_edits(z)
    assert (a.subject, a.prompt, a.target, a.rephrases, a.truth) == (
        "Watts Humphrey", ZSRE[0]["src"], "University of Michigan", (ZSRE[0]["rephrase"],),
        "Illinois Institute of Technology")
    assert a.locality == ((ZSRE[0]["loc"], "Billy Idol"),) and b.key == c.key == "edit:lahti town hall"
    cf = tmp_path / "cf.jsonl"
    cf.write_text(json.dumps(COUNTERFACT) + "\n")
    [r] = read_edits(cf)
    assert r.prompt == "The mother tongue of Danielle Darrieux is" and r.target == "English" and r.relation == "P103"
    assert r.locality == (("The mother tongue of Léon Blum is", "French"), ("The native language of Montesquieu is",
                                                                           "French"))
    assert r.rephrases == ("Danielle Darrieux spoke the language",) and r.key == "P103:danielle darrieux"


@pytest.mark.parametrize("record,message", [
    ({"subject": "X", "src": "What is X?"}, "'alt' must be a non-empty string"),
    ({"subject": "Y", "src": "What is X?", "alt": "Z"}, "subject 'Y' does not occur in src"),
    ({"subject": "X", "src": "What is X?", "alt": "Z", "rephrase": 3}, "'rephrase' must be a string or a list"),
    ({"subject": "X", "src": "What is X?", "alt": "Z", "loc": "q"}, "'loc_ans' must be a non-empty string"),
    ({"requested_rewrite": {"prompt": "The language of X is", "subject": "X", "target_new": {"str": "E"}}},
     "must hold '{}'"),
    ({"requested_rewrite": {"prompt": "{} speaks", "subject": "X", "target_new": {"str": "E"}},
      "neighborhood_prompts": ["Y speaks"]}, "need requested_rewrite.target_true.str"),
    ({"question": "?"}, "neither a zsRE record"),
])
def test_malformed_edit_records_are_one_line_exit_2(tmp_path, capsys, record, message):
    path = tmp_path / "edits.jsonl"
    path.write_text(json.dumps(ZSRE[0]) + "\n" + json.dumps(record) + "\n")
    r = call_main(capsys, "online-eval", "--edits", str(path), "--out", str(tmp_path / "runs"))
    assert r.returncode == 2 and "line 2" in r.stderr and message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_the_router_sends_prompts_about_stored_facts_or_the_user_to_the_adapter(tokenizer, tmp_path):
    from forgetlab.model import adapter_off
    from forgetlab.online.edits import read_edits
    from forgetlab.online.learner import ADAPTER

    path = tmp_path / "z.json"
    path.write_text(json.dumps(ZSRE[:1]))
    learner = tiny_learner(tokenizer, tmp_path / "state", update={"steps": 2, "lr": 5e-2})
    learner.edit(read_edits(path)[0])
    texts = ["Which university did watts humphrey go to?", "What is the capital of Japan?", "Where do I live?",
             "Was Watts Humphrey's university Michigan?", "Was Watts Humphreys a writer?"]
    assert learner.routed(texts) == [True, False, True, True, False]  # a possessive names the subject too
    x = torch.tensor([tokenizer("What is the capital of Japan?")["input_ids"]])
    with torch.no_grad():
        on = learner.model(input_ids=x).logits
        with adapter_off(learner.model, ADAPTER):
            off = learner.model(input_ids=x).logits
            with learner.model.disable_adapter():
                base = learner.model(input_ids=x).logits
    assert not torch.allclose(on, off) and torch.equal(off, base)  # off is the model as it started, exactly
    with torch.no_grad():
        assert torch.equal(learner.model(input_ids=x).logits, on)  # and the adapter is back on after the block


def test_a_later_edit_of_the_same_subject_replaces_the_earlier_one_and_trains_its_prompts(tokenizer, tmp_path,
                                                                                           monkeypatch):
    from forgetlab.batching import collate
    from forgetlab.losses import nll
    from forgetlab.online.edits import read_edits, teacher_forced_row

    path = tmp_path / "z.json"
    path.write_text(json.dumps(ZSRE[1:]))
    first, second = read_edits(path)
    learner = tiny_learner(tokenizer, tmp_path / "state", update={"steps": 6, "lr": 1e-2, "stop_loss": 0.0,
                                                                  "rehearse": 0, "kl_fact": 0.0})
    trained = []
    real = learner._update
    monkeypatch.setattr(learner, "_update", lambda ex, *a, **kw: trained.append(ex) or real(ex, *a, **kw))
    learner.edit(first)
    [row] = learner.memory.all()
    assert row["value"] == "Alfred Lahti" and row["forms"] == [(first.prompt, "Alfred Lahti")]

    def loss(prompt, answer):
        with torch.no_grad():
            return float(nll(learner.model, collate([teacher_forced_row(tokenizer, prompt, answer)],
                                                    tokenizer.pad_token_id)))

    old_prompt_new_value = loss(first.prompt, second.target)
    learner.edit(second)
    [row] = learner.memory.all()  # one fact for the subject: the new value, both prompts
    assert row["value"] == "Aki Kaurismäki" and row["forms"] == [(second.prompt, "Aki Kaurismäki"),
                                                                 (first.prompt, "Aki Kaurismäki")]
    # each prompt trained with the new value through the chat template and as plain text; nothing says the old one
    assert [(e.messages[-1]["content"], e.target, e.meta["plain"]) for e in trained[1]] == [
        (second.prompt, "Aki Kaurismäki", False), (second.prompt, "Aki Kaurismäki", True),
        (first.prompt, "Aki Kaurismäki", False), (first.prompt, "Aki Kaurismäki", True)]
    assert loss(first.prompt, second.target) < old_prompt_new_value  # the earlier prompt moved to the later value


def test_online_eval_edits_writes_its_run_directory_with_baselines(tiny_dir, tmp_path, capsys):
    path = tmp_path / "z.json"
    path.write_text(json.dumps(ZSRE))
    r = call_main(capsys, "online-eval", "--edits", str(path), "--baselines", "--out", str(tmp_path / "runs"),
                  "--model", str(tiny_dir), "--set", "update.steps=2", "--set", "gate.controls=0",
                  "--set", "gate.check_tokens=4", "--set", "metrics_every=0")
    assert r.returncode == 0, r.stderr
    [run] = (tmp_path / "runs").glob("*online-edits*")
    m = json.loads((run / "metrics.json").read_text())
    assert set(m) == {"forgetlab", "fine-tune", "retrieval"}
    assert [c["T"] for c in m["forgetlab"]["curve"]] == [1, 2, 3] and [c["T"] for c in m["retrieval"]["curve"]] == [1, 3]
    assert m["forgetlab"]["summary"]["later_wins_n"] == 1 and m["forgetlab"]["summary"]["edits"] == 3
    for name in ("edits.csv", "curve.csv", "curve.png", "report.html", "state/memory.sqlite", "fine-tune-state"):
        assert (run / name).exists(), name
    # the retrieval baseline changes no weight and recalls nothing for an unrelated prompt: locality exactly 1
    assert m["retrieval"]["summary"]["locality"] == 1.0
    assert "reliability" in r.stdout and "retrieval" in r.stdout and "fine-tune" in r.stdout
    ran = yaml.safe_load((run / "config.yaml").read_text())  # the editor preset, unless another is named
    assert ran["lora"]["top_layers"] == 0.5 and ran["update"]["rehearse_recent"] == 0.375
