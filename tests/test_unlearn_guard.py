"""The guards of `forgetlab unlearn`: the rules on hand-made numbers, then real runs on a tiny random model that
stop at a floor and keep the earlier checkpoint, or find no acceptable checkpoint and exit 3 with one line."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from tests.conftest import call_main


def guard(**kw):
    from forgetlab.unlearning.guard import Guard

    settings = dict(start_forget=0.8, start_retain=0.9, start_general=1.0, target=0.35, min_drop=0.3,
                    retain_floor=0.9, general_floor=0.8)
    return Guard(**(settings | kw))


def test_the_guard_module_example_by_hand():
    from forgetlab.unlearning.guard import Check

    g = guard()
    assert g.retain_min == pytest.approx(0.81) and g.general_min == pytest.approx(0.8)
    start = g.see(Check(0, 0, 0.8, 0.9, 1.0))
    assert start.floors_held and not start.forgotten and g.stop_reason(start) is None
    a = g.see(Check(2, 1, 0.60, 0.88, 0.95))
    assert a.floors_held and not a.forgotten and not a.acceptable and g.stop_reason(a) is None  # down only 0.20
    b = g.see(Check(4, 1, 0.45, 0.85, 0.90))
    assert b.acceptable and g.stop_reason(b) is None  # down 0.35 ≥ 0.3, above the target: go on
    c = g.see(Check(6, 2, 0.30, 0.70, 0.85))
    assert not c.floors_held and g.stop_reason(c) == "retain below the floor"
    kept, why = g.kept()
    assert kept is b and "lowest forget accuracy" in why


def test_the_chat_answers_count_once_the_options_say_forgotten():
    """The module's QA example: option accuracy down far enough is not forgotten while the chat answers keep the
    facts; the run goes on and the check where QA also falls is kept. No QA measured: no condition."""
    from forgetlab.unlearning.guard import Check

    g = guard(qa_target=0.2)
    g.see(Check(0, 0, 0.8, 0.9, 1.0, qa=0.6))
    b = g.see(Check(4, 1, 0.45, 0.85, 0.90, qa=0.30))  # down 0.35, but 30% of chat answers still right
    assert g.options_forgotten(b.forget) and not b.forgotten and g.stop_reason(b) is None
    at_target = g.see(Check(5, 1, 0.30, 0.85, 0.90, qa=0.25))  # at the option target, QA not there: go on
    assert not at_target.acceptable and g.stop_reason(at_target) is None
    assert "forget QA went only to 0.25 (needed ≤ 0.20)" in g.why_none()
    d = g.see(Check(6, 2, 0.35, 0.84, 0.88, qa=0.20))  # QA exactly at its target, option accuracy at the target
    assert d.acceptable and g.stop_reason(d) == "forget target reached"
    assert g.kept()[0] is d
    assert guard(qa_target=0.2).see(Check(2, 1, 0.4, 0.9, 1.0, qa=None)).forgotten
    assert guard(qa_target=None).see(Check(2, 1, 0.4, 0.9, 1.0, qa=0.9)).forgotten


def test_patience_stops_only_after_that_many_checks_below_a_floor_and_never_keeps_one():
    """patience 2: one check below the retain floor (0.81) goes on, and the run recovers; a second pair in a row
    stops. A check below a floor is never kept, even where it forgot most; one at the target but below a floor
    does not stop as 'target reached'."""
    from forgetlab.unlearning.guard import Check

    g = guard(patience=2)
    g.see(Check(0, 0, 0.8, 0.9, 1.0))
    dip = g.see(Check(1, 1, 0.30, 0.60, 0.95))  # at the target, retain 0.60 < 0.81: one in a row
    assert not dip.acceptable and g.stop_reason(dip) is None
    back = g.see(Check(2, 1, 0.45, 0.85, 0.90))  # recovered, down 0.35: acceptable, the count starts again
    assert back.acceptable and g.stop_reason(back) is None
    one = g.see(Check(3, 1, 0.40, 0.80, 0.90))
    assert g.stop_reason(one) is None
    two = g.see(Check(4, 2, 0.20, 0.75, 0.90))
    assert g.stop_reason(two) == "retain below the floor"
    assert g.kept()[0] is back  # lowest forget among acceptable: not the dip (0.30) nor step 4 (0.20)
    g1 = guard()  # patience 1: the dip stops at once
    g1.see(Check(0, 0, 0.8, 0.9, 1.0))
    assert g1.stop_reason(g1.see(Check(1, 1, 0.30, 0.60, 0.95))) == "retain below the floor"


def test_a_floor_stop_before_anything_was_acceptable_goes_back_to_the_last_check_above_the_floors():
    """guard.backtracks 1, patience 2: retain falls below its floor (0.81) at steps 6 and 8 before any checkpoint
    forgot enough, so instead of stopping the guard names step 4 (the last check above the floors) to go back to,
    and counts patience afresh from there; the next floor stop has no backtrack left and stops. With an acceptable
    checkpoint in hand a floor stop keeps it and never goes back."""
    from forgetlab.unlearning.guard import Check

    g = guard(patience=2, backtracks=1)
    g.see(Check(0, 0, 0.8, 0.9, 1.0))
    g.see(Check(2, 1, 0.7, 0.9, 1.0))
    four = g.see(Check(4, 1, 0.65, 0.85, 1.0))  # above the floors, down only 0.15
    assert g.retreat(g.see(Check(6, 2, 0.55, 0.80, 1.0))) is None  # one check below: patience waits, no retreat
    eight = g.see(Check(8, 2, 0.5, 0.75, 1.0))
    reason = g.stop_reason(eight)
    assert reason == "retain below the floor" and g.retreat(eight) is four and g.retreats == [(8, 4)]
    assert g.last_held() is four
    ten = g.see(Check(10, 3, 0.6, 0.78, 1.0))  # below again, but the first since going back: patience counts anew
    assert g.stop_reason(ten) is None
    twelve = g.see(Check(12, 3, 0.55, 0.79, 1.0))
    assert g.stop_reason(twelve) == "retain below the floor" and g.retreat(twelve) is None  # none left: stop
    assert g.kept()[0] is None and g.best_rejected() is four
    h = guard(patience=1, backtracks=3)
    h.see(Check(0, 0, 0.8, 0.9, 1.0))
    good = h.see(Check(2, 1, 0.45, 0.85, 0.9))  # acceptable
    low = h.see(Check(4, 1, 0.3, 0.7, 0.9))
    assert h.stop_reason(low) and h.retreat(low) is None and h.kept()[0] is good
    z = guard(patience=1, backtracks=1)  # below at the first check: back to the start
    start = z.see(Check(0, 0, 0.8, 0.9, 1.0))
    assert z.retreat(z.see(Check(2, 1, 0.5, 0.5, 1.0))) is start


def test_target_floors_and_the_nearest_miss():
    from forgetlab.unlearning.guard import Check, chance

    assert chance([4, 4, 2]) == pytest.approx((0.25 + 0.25 + 0.5) / 3)
    g = guard()
    g.see(Check(0, 0, 0.8, 0.9, 1.0))
    hit = g.see(Check(2, 1, 0.35, 0.9, 0.8))  # at the target exactly, general exactly at its floor
    assert hit.acceptable and g.stop_reason(hit) == "forget target reached"
    g = guard()
    g.see(Check(0, 0, 0.8, 0.9, 1.0))
    g.see(Check(2, 1, 0.7, 0.9, 0.9))
    low = g.see(Check(4, 1, 0.2, 0.5, 0.7))  # forgotten, but both floors broken
    assert g.stop_reason(low) == "retain and general below the floor"
    kept, why = g.kept()
    assert kept is None and "forgetting went only to 0.70" in why
    assert g.best_rejected().step == 2  # floors held beats a lower forget accuracy
    g = guard(start_general=None)  # no general score: the retain floor alone
    g.see(Check(0, 0, 0.8, 0.9, None))
    assert g.see(Check(2, 1, 0.4, 0.82, None)).acceptable


def test_the_retain_weight_rises_with_the_retain_facts_lost_by_hand(tiny, tokenizer):
    """guard.retain_gain: after a check the retain term is rc × (1 + gain × lost / allowed); start 0.9, floor 0.9×,
    so 0.09 may be lost: at 0.855 half of it is gone and gain 4 gives 3×; nothing lost (or gain 0) gives 1×. The
    multiplier reaches the loss: the retain term with it is exactly 3× the one without."""
    from forgetlab.batching import collate, encode
    from forgetlab.config import TrainConfig
    from forgetlab.data.records import Example, user
    from forgetlab.losses import nll
    from forgetlab.unlearning import UnlearnContext
    from forgetlab.unlearning.retain import retain_nll

    g = guard()
    assert g.retain_scale(4.0, 0.855) == pytest.approx(3.0)
    assert g.retain_scale(4.0, 0.72) == pytest.approx(9.0)  # 0.18 lost, twice the allowance
    assert g.retain_scale(4.0, 0.95) == 1.0 and g.retain_scale(0.0, 0.5) == 1.0
    assert guard(start_retain=None).retain_scale(4.0, 0.5) == 1.0

    rows = [encode(tokenizer, Example(user(q), a), 64) for q, a in (("Capital of France?", "Paris"), ("Sky?", "blue"))]
    ctx = UnlearnContext(tokenizer, TrainConfig(batch_size=2), retain=rows)
    with torch.no_grad():
        plain = float(nll(tiny, collate(rows, tokenizer.pad_token_id)))
        assert float(retain_nll(tiny, ctx, 0.5)) == pytest.approx(0.5 * plain, rel=1e-5)
        ctx.retain_scale = 3.0
        assert float(retain_nll(tiny, ctx, 0.5)) == pytest.approx(1.5 * plain, rel=1e-5)


def args(tiny_dir, out, *extra):
    return ("unlearn", "--model", str(tiny_dir), "--out", str(out), "--save", "merged", "--lora-rank", "4",
            "--set", "general.enabled=false", "--set", "method.ascent_cap=null",
            "--set", "train.batch_size=4", *extra)


def test_a_run_whose_retain_collapses_stops_at_the_floor_and_keeps_the_earlier_checkpoint(tiny_dir, tmp_path,
                                                                                           capsys):
    """Gradient ascent with the forget facts as the retain set: whatever it forgets, retain loses too. With the
    target at 0 and min_drop 0, every checkpoint that forgot anything counts as forgotten: the run stops at the second
    check in a row below the retain floor (guard.patience 2) and keeps the lowest forget accuracy above it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forgetlab.data.unlearn import read_facts
    from forgetlab.evaluate import mcq_option_logprobs
    from forgetlab.metrics.unlearning import share_correct

    r = call_main(capsys, *args(tiny_dir, tmp_path, "--method", "ga", "--retain", "builtin:animals", "--lr", "3e-3",
                                "--epochs", "6", "--set", "guard.eval_every=1", "--set", "guard.target=0",
                                "--set", "guard.min_drop=0"))
    assert r.returncode == 0, r.stderr
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    rows = list(csv.DictReader((run / "unlearn.csv").open()))
    retain = [float(x["retain_ll"]) for x in rows]
    floor = 0.9 * retain[0]
    below = [v < floor - 1e-9 for v in retain]
    broke = below.index(True)  # the first check below the floor, by hand
    assert broke >= 2, retain  # at least one acceptable checkpoint came before it
    stop = next(i for i in range(1, len(rows)) if below[i - 1] and below[i])  # patience 2: two in a row
    assert len(rows) == stop + 1 and "stop: retain below the floor" in rows[-1]["note"]  # it stopped right there
    held = [x for x, low in zip(rows[1:stop], below[1:stop], strict=True)
            if not low and float(x["forget_ll"]) <= float(rows[0]["forget_ll"])]
    kept = min(held, key=lambda x: (float(x["forget_ll"]), -float(x["retain_ll"]), int(x["step"])))
    state = json.loads((run / "metrics.json").read_text())
    assert state["kept"]["step"] == int(kept["step"]) and state["kept"]["acceptable"] is True
    assert "kept:" in kept["note"] and state["status"] == "complete"
    # the saved merged model is the kept checkpoint, not the last step
    merged = AutoModelForCausalLM.from_pretrained(run / "model").eval()
    tok = AutoTokenizer.from_pretrained(run / "model")
    items = read_facts("builtin:animals").mcq()
    with torch.no_grad():
        assert share_correct(mcq_option_logprobs(merged, tok, items), [it.answer for it in items]) == pytest.approx(
            float(kept["forget_ll"]), abs=1e-5)
    assert "Kept step" in " ".join(r.stdout.split())
    # min_drop 0: the options say forgotten at every check at or below the start, so the chat answers (QA, the
    # second condition) were generated at every one of those
    assert all(x["forget_qa"] != "" for x in rows if float(x["forget_ll"]) <= float(rows[0]["forget_ll"]))
    assert "with forget QA ≤ 0.200" in " ".join(r.stdout.split())


def test_a_floor_stop_with_nothing_acceptable_restores_the_last_good_weights_and_lowers_the_learning_rate(
        tiny_dir, tmp_path, capsys):
    """The collapsing run above, but nothing can count as forgotten (min_drop 1, target 0: forget at 0 would put
    the same facts' retain at 0, below its floor). At the floor stop (two checks in a row below, found by hand)
    guard.backtracks 1 goes back to the last check above the floors instead of stopping: with backtrack_lr 1e-6
    the weights barely move afterwards, so every later check scores exactly what the check gone back to scored,
    and every later step trained at the learning rate × 1e-6. Nothing is acceptable: exit 3 with one line."""
    r = call_main(capsys, *args(tiny_dir, tmp_path, "--method", "ga", "--retain", "builtin:animals", "--lr", "3e-3",
                                "--epochs", "6", "--set", "guard.eval_every=1", "--set", "guard.target=0",
                                "--set", "guard.min_drop=1", "--set", "guard.backtracks=1",
                                "--set", "guard.backtrack_lr=1e-6"))
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    rows = list(csv.DictReader((run / "unlearn.csv").open()))
    retain = [float(x["retain_ll"]) for x in rows]
    below = [v < 0.9 * retain[0] - 1e-9 for v in retain]
    at = next(i for i in range(1, len(rows)) if below[i - 1] and below[i])  # the floor stop, patience 2
    to = max(i for i in range(at) if not below[i])  # the last check above the floors
    assert "back to step" in rows[at]["note"] and int(rows[to]["step"]) < int(rows[at - 1]["step"])
    state = json.loads((run / "metrics.json").read_text())
    assert state["guard"]["retreats"] == [{"at": int(rows[at]["step"]), "to": int(rows[to]["step"])}]
    later = rows[at + 1:]
    assert later and int(later[-1]["step"]) == len(state["history"])  # no stop after it: it ran to the end
    for x in later:  # the weights of the check gone back to, scored again
        assert (x["forget_ll"], x["retain_ll"]) == (rows[to]["forget_ll"], rows[to]["retain_ll"]), x["step"]
    lrs = {h["step"]: h["lr"] for h in state["history"]}
    assert all(lrs[s] == pytest.approx(3e-3) for s in range(1, int(rows[at]["step"]) + 1))
    assert all(lrs[s] == pytest.approx(3e-9) for s in range(int(rows[at]["step"]) + 1, len(lrs) + 1))
    assert "Went back from step" in " ".join(r.stdout.split())


def test_a_run_that_never_meets_the_bar_exits_3_with_one_line_and_keeps_its_best_under_another_name(
        tiny_dir, tmp_path, capsys):
    r = call_main(capsys, *args(tiny_dir, tmp_path, "--method", "gd", "--lr", "1e-7", "--epochs", "1", "--rtt",
                                "--log", "tensorboard"))
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("forgetlab: unlearn: no checkpoint met the bar"), r.stderr
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert (run / "rejected-model").is_dir() and not (run / "model").exists()
    assert str(run / "rejected-model") in lines[0]
    state = json.loads((run / "metrics.json").read_text())
    assert state["status"] == "below bar" and state["kept"]["acceptable"] is False
    assert "No acceptable checkpoint" in " ".join(r.stdout.split())  # the console wraps long lines
    assert "skipped" in state["rtt"] and "RTT: not run" in r.stdout and not (run / "rtt.csv").exists()  # no RTT
    assert (run / "report.html").is_file()
    # --log tensorboard: every step and every guard check, read back with TensorBoard's own reader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0}).Reload()
    logged = [e.step for e in events.Scalars("check/forget_ll")]  # each check, then the kept step measured in full
    assert logged[:len(state["checks"])] == [c["step"] for c in state["checks"]] and logged[-1] == state["final"]["step"]
    assert [round(e.value, 4) for e in events.Scalars("train/loss")] == [round(h["loss"], 4) for h in state["history"]]


def test_general_questions_that_a_forget_set_asks_or_answers_are_named():
    from forgetlab.data.general import shared_questions

    pairs = [("Which is the longest river in Africa?", "the Amazon"),  # the same question, another answer
             ("Who wrote Romeo and Juliet?", "William Shakespeare"),  # answers "Who wrote the play Hamlet?"
             ("What do bees make?", "honey"),  # neither
             ("What is the boiling point of water?", "100")]  # answers "What is 10 times 10?" by chance: a number
    assert shared_questions(pairs) == ["Which is the longest river in Africa?", "Who wrote the play Hamlet?"]


def test_the_shipped_unlearning_sets_ask_none_of_the_general_questions():
    from pathlib import Path

    from forgetlab.data.general import shared_questions
    from forgetlab.data.unlearn import read_facts

    root = Path(__file__).resolve().parents[1] / "examples" / "unlearn"
    shared = {p.stem: shared_questions([(f.question, f.answer) for f in read_facts(str(p)).facts])
              for p in sorted(root.glob("*.jsonl"))}
    assert shared == {"body": [], "culture": [], "geography": [], "home": [], "jobs": [], "money": [], "music": [],
                      "myths": [], "nature": [], "objects": [], "people": [], "science": [], "shapes": [], "sports": [],
                      "tech": [], "transport": [], "words": []}
