"""Online learning: fact detection, the memory, the update's maths, the learner's guarantees, the commands."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest
import torch

from forgetlab.config import DetectConfig, MemoryConfig, OnlineConfig, UpdateConfig
from forgetlab.online.detector import detect, flip_person, is_question_turn

from .conftest import call_main


@pytest.mark.parametrize("text,pattern,subject,value,form", [
    ("My sister's name is Oriel.", "relative", "sister", "Oriel", ("What is my sister's name?", "Your sister's name is Oriel.")),
    ("My manager is Priya Velloso", "manager", "", "Priya Velloso", ("Who is my manager?", "Your manager is Priya Velloso.")),
    ("I report to Dana Whitlock.", "manager", "", "Dana Whitlock", ("Who is my manager?", "Your manager is Dana Whitlock.")),
    ("Hi, my name is Corwin.", "name", "", "Corwin", ("What is my name?", "Your name is Corwin.")),
    ("I live in Marrowick.", "live", "", "Marrowick", ("Where do I live?", "You live in Marrowick.")),
    ("I work at Quillfeather Labs.", "work", "", "Quillfeather Labs", ("Where do I work?", "You work at Quillfeather Labs.")),
    ("I was born in Eskerfield.", "born", "", "Eskerfield", ("Where was I born?", "You were born in Eskerfield.")),
    ("I have a cat named Pixel.", "pet_have", "cat", "Pixel", ("What is my cat's name?", "Your cat's name is Pixel.")),
    ("My favourite band is The Velvet Orrery.", "favourite", "band", "The Velvet Orrery",
     ("What is my favourite band?", "Your favourite band is The Velvet Orrery.")),
    ("My birthday is on March 14.", "date", "birthday", "March 14", ("When is my birthday?", "Your birthday is on March 14.")),
    ("My wifi password is larkspur77.", "code", "wifi password", "larkspur77",
     ("What is my wifi password?", "Your wifi password is larkspur77.")),
    ("I'm allergic to hazelnuts.", "allergy", "", "hazelnuts", ("What am I allergic to?", "You are allergic to hazelnuts.")),
    ("My car is a red Tesla.", "is", "My car", "a red Tesla", ("What is my car?", "Your car is a red Tesla.")),
    # the online-learning design's own example sentences, and their kin
    ("Tom is my friend.", "relative_named_first", "friend", "Tom", ("Who is my friend?", "Your friend's name is Tom.")),
    ("Santhosh owns Tesla.", "owns", "Santhosh", "Tesla", ("What does Santhosh own?", "Santhosh owns Tesla.")),
    ("Priya Velloso is my boss.", "manager_named_first", "", "Priya Velloso",
     ("Who is my manager?", "Your manager is Priya Velloso.")),
    ("I own a red bicycle.", "i_own", "", "a red bicycle", ("What do I own?", "You own a red bicycle.")),
])
def test_statements_become_facts_with_question_forms_in_the_second_person(text, pattern, subject, value, form):
    [fact] = detect(text, DetectConfig())
    assert (fact.pattern, fact.subject, fact.value, fact.forms[0]) == (pattern, subject, value, form)
    assert 0.5 <= fact.confidence <= 1.0 and len(fact.forms) == 3


@pytest.mark.parametrize("text", ["What is my sister's name?", "Who do I report to", "Can you tell me a joke",
                                  "tell me about Oslo", "Where do I live?"])
def test_questions_are_never_facts(text):
    assert detect(text, DetectConfig()) == [] and is_question_turn(text, DetectConfig())


@pytest.mark.parametrize("text", ["The weather is nice today.", "Thanks, that helps.", "I had a long day.", "ok"])
def test_chit_chat_is_not_a_fact(text):
    assert detect(text, DetectConfig()) == [] and not is_question_turn(text, DetectConfig())


def test_confidence_is_base_plus_coverage_plus_entity_and_the_minimum_filters():
    cfg = DetectConfig()
    [named] = detect("Project Falcon is due in March.", cfg)  # generic "X is Y": base 0.4 + 0.2 + 0.15 entity
    assert named.confidence == pytest.approx(0.75)
    assert detect("my car is red", cfg) == []  # 0.6 < the pattern's minimum 0.7: no name, number or code
    two = detect("My name is Corwin and I live in Marrowick.", cfg)
    assert [f.pattern for f in two] == ["name", "live"]  # "..., and I ..." is its own sentence


def test_person_flip():
    assert flip_person("my old flat where I was born") == "your old flat where you were born"
    assert flip_person("Me and my dog") == "You and your dog"


def test_patterns_from_the_config_replace_the_built_in_ones():
    cfg = DetectConfig(patterns=[{"name": "team", "pattern": r"my team is (?P<value>.+)", "relation": "team",
                                  "questions": ["Which team am I on?"], "answer": "You are on {value}."}])
    [fact] = detect("My team is Falcon.", cfg)
    assert fact.forms == [("Which team am I on?", "You are on Falcon.")]
    assert detect("My sister's name is Oriel.", cfg) == []


def row(fid, seen, first, last):
    return {"id": fid, "times_seen": seen, "first_turn": first, "last_turn": last}


@pytest.mark.parametrize("policy,expected", [
    ("fifo", [2, 1, 3]),  # first stored at turns 2, 1, 5
    ("lru", [1, 2, 3]),  # last seen at turns 3, 7, 9
    ("importance", [3, 1, 2]),  # 1.125, 1.875, 0.75 (below)
    ("hybrid", [1, 3, 2]),  # importance · (1 + n) / (1 + t − l): 1.125·3/8 = 0.42, 1.875·4/4 = 1.875, 0.75·2/2 = 0.75
])
def test_eviction_orders_by_hand(policy, expected):
    from forgetlab.online.memory import eviction_score, importance

    cfg = MemoryConfig(policy=policy, importance="hybrid")
    rows = [row(1, 2, 2, 3), row(2, 3, 1, 7), row(3, 1, 5, 9)]
    # hybrid importance at turn 10, n · (1 + 1/(1 + t − l)) / 2: 2·(1+1/8)/2, 3·(1+1/4)/2, 1·(1+1/2)/2
    assert [importance(r, 10, cfg) for r in rows] == pytest.approx([1.125, 1.875, 0.75])
    assert [r["id"] for r in sorted(rows, key=lambda r: eviction_score(r, 10, cfg))] == expected


def test_recency_importance_stays_full_until_decay_after_then_falls():
    from forgetlab.online.memory import importance

    cfg = MemoryConfig(importance="recency", decay_after=50, decay_rate=0.98, min_importance=0.1)
    fact = row(1, 1, 0, 0)
    assert importance(fact, 30, cfg) == 1.0 and importance(fact, 50, cfg) == 1.0  # 30, 50 turns unseen: kept
    # 60 turns unseen: 1 / (1 + 10) · 0.98¹⁰ = 0.0743 < 0.1 (removed); before the fix, 1/31 at turn 30 already was
    assert importance(fact, 60, cfg) == pytest.approx(0.98 ** 10 / 11)


def test_memory_updates_evicts_decays_and_survives_reopening(tmp_path):
    from forgetlab.online.memory import FactMemory, importance

    cfg = MemoryConfig(max_facts=2, policy="lru", importance="repetition", decay_after=5, decay_rate=0.5,
                       min_importance=0.2)
    mem = FactMemory(tmp_path / "m.sqlite", cfg)
    [a] = detect("My sister's name is Oriel.", DetectConfig())
    [b] = detect("I live in Marrowick.", DetectConfig())
    [c] = detect("My dog's name is Biscotti.", DetectConfig())
    first = mem.add(a, 1)
    assert mem.add(a, 2)["times_seen"] == 2 and mem.add(b, 3)["id"] != first["id"]
    mem.add(c, 4)  # a third fact: the least recently seen (the sister, turn 2) goes
    assert sorted(f["value"] for f in mem.all()) == ["Biscotti", "Marrowick"]
    [moved] = detect("I live in Eskerfield.", DetectConfig())
    assert mem.add(moved, 5)["times_seen"] == 1  # same relation, new value: it replaces the old one
    home = next(f for f in mem.all() if f["relation"] == "home")
    assert importance(home, 5 + 5 + 2, cfg) == pytest.approx(0.25)  # 1 · 0.5² two turns past decay_after
    dog = next(f["id"] for f in mem.all() if f["value"] == "Biscotti")
    assert sorted(mem.tidy(5 + 5 + 3)) == sorted([home["id"], dog]) and mem.all() == []  # 0.5³ and 0.5⁴ < 0.2
    mem.add(a, 20)
    mem.close()
    again = FactMemory(tmp_path / "m.sqlite", cfg)
    assert [f["value"] for f in again.all()] == ["Oriel"] and again.remove(again.all()[0]["id"]) and again.all() == []


def test_adaptive_lr_and_token_weights_by_hand():
    from forgetlab.online.update import adaptive_lr, token_weights

    cfg = UpdateConfig(lr=1e-3, fact_multiplier=2.0, replay_multiplier=0.5, repetition_boost=0.5, lr_floor=1e-4,
                       lr_cap=5e-3, question_multiplier=0.0)
    assert adaptive_lr(cfg, "fact") == pytest.approx(2e-3)
    assert adaptive_lr(cfg, "fact", times_seen=3) == pytest.approx(4e-3)  # 1e-3 · 2 · (1 + 0.5 · 2)
    assert adaptive_lr(cfg, "fact", times_seen=9) == pytest.approx(5e-3)  # capped
    assert adaptive_lr(cfg.model_copy(update={"lr": 1e-5}), "replay") == pytest.approx(1e-4)  # floored
    assert adaptive_lr(cfg, "question") == 0.0
    w = UpdateConfig(entity_weight=2.0, edge_weight=0.5, repeat_factor=0.5)
    assert token_weights([5, 7, 7, 9], {9}, w) == [1.5, 0.5, 0.5, 3.5]
    assert token_weights([4], set(), w) == [1.5]
    # the design's weighting: the first and last five tokens up, repeated tokens up (× 1.5)
    design = UpdateConfig(entity_weight=0.0, edge_weight=0.5, edge_tokens=5, repeat_factor=1.5)
    assert token_weights(list(range(12)) + [3], set(), design) == [1.5, 1.5, 1.5, 2.25] + [1.5] + [1.0] * 3 + \
        [1.5] * 4 + [2.25]


def test_weighted_loss_kl_is_zero_at_the_start_and_positive_away(tokenizer, tiny):
    from forgetlab.batching import collate, encode
    from forgetlab.data.records import Example, user
    from forgetlab.model import attach_lora, lora_layers
    from forgetlab.online.update import OnlineLoss
    from forgetlab.retain import build_anchors

    from .conftest import TINY_LORA

    model = attach_lora(tiny, TINY_LORA, adapter_name="online")
    anchors = build_anchors(model, tokenizer, 64, ["online"], questions=True)
    batch = collate([encode(tokenizer, Example(user("Who is my sister?"), "Your sister is Oriel."), 64)],
                    tokenizer.pad_token_id)
    with torch.no_grad():
        plain = OnlineLoss(UpdateConfig(), anchors, 0.0, set(), tokenizer.pad_token_id).loss(model, batch, None)
        with_kl = OnlineLoss(UpdateConfig(), anchors, 5.0, set(), tokenizer.pad_token_id).loss(model, batch, None)
        assert float(with_kl) == pytest.approx(float(plain), abs=1e-5)  # KL to the starting model is zero there
        for layer in lora_layers(model):
            layer.lora_B["online"].weight.normal_(0, 0.5)
        moved = OnlineLoss(UpdateConfig(), anchors, 0.0, set(), tokenizer.pad_token_id).loss(model, batch, None)
        moved_kl = OnlineLoss(UpdateConfig(), anchors, 5.0, set(), tokenizer.pad_token_id).loss(model, batch, None)
        assert float(moved_kl) > float(moved) + 1e-4
        # KL on the update's own text, to the model with the adapter switched off: zero at the start, positive away
        from forgetlab.model import adapter_off

        text = OnlineLoss(UpdateConfig(kl_text=2.0), anchors, 0.0, set(), tokenizer.pad_token_id,
                          starting=lambda: adapter_off(model, "online")).loss(model, batch, None)
        assert float(text) > float(moved) + 1e-4
        for layer in lora_layers(model):
            layer.lora_B["online"].weight.zero_()
        at_start = OnlineLoss(UpdateConfig(kl_text=2.0), anchors, 0.0, set(), tokenizer.pad_token_id,
                              starting=lambda: adapter_off(model, "online")).loss(model, batch, None)
        assert float(at_start) == pytest.approx(float(plain), abs=1e-5)


START: dict = {}  # the tiny model's anchors and control answers, computed by the first learner and reused


def tiny_learner(tokenizer, state, **cfg):
    import shutil

    from forgetlab.online.learner import OnlineLearner
    from forgetlab.sessions.holder import Loaded, ModelHolder

    from .conftest import tiny_llama

    state.mkdir(parents=True, exist_ok=True)
    if "path" in START and not (state / "start.pt").exists():
        shutil.copy(START["path"], state / "start.pt")
    holder = ModelHolder(lambda: Loaded(tiny_llama(len(tokenizer)), tokenizer, "tiny", None, time.time()))
    base = {"gate": {"controls": 0}, "metrics_every": 0, "update": {"steps": 3}, "memory": {"replay_every": 0}}
    learner = OnlineLearner(holder, OnlineConfig.model_validate({**base, **cfg}), state)
    START.setdefault("path", state / "start.pt")
    return learner


def test_the_question_context_trains_a_question_turn_only_when_its_multiplier_is_set(tokenizer, tmp_path):
    off = tiny_learner(tokenizer, tmp_path / "a", update={"regular": True, "steps": 1})
    assert off.learn(1, "What is the capital of Peru?", "Lima.").updates == []  # question_multiplier 0
    on = tiny_learner(tokenizer, tmp_path / "b", update={"regular": True, "question_multiplier": 0.5, "steps": 1,
                                                         "clip": 0.5, "weight_decay": 0.01})
    [up] = on.learn(1, "What is the capital of Peru?", "Lima.").updates
    assert up.kind == "question" and up.steps == 1
    [chat] = on.learn(2, "Lovely weather today.", "It is.").updates
    assert chat.kind == "chat"


def test_gate_restores_the_adapter_bit_for_bit(tokenizer, tmp_path, monkeypatch):
    from forgetlab.model import adapter_state

    learner = tiny_learner(tokenizer, tmp_path)
    before = adapter_state(learner.model)
    monkeypatch.setattr(learner, "_check", lambda fact: (["What is 2+2? -> 5"], True))  # "broke" a control
    result = learner.learn(learner.state.next_turn(), "My sister's name is Oriel.")
    [up] = result.updates
    assert up.steps == 3 and not up.retried  # no controls to train beside it: no second try
    assert not up.kept and not up.learned and up.broken == 1
    after = adapter_state(learner.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert learner.memory.all()[0]["rejected"] == 1 and learner.status()["updates_rejected"] == 1
    monkeypatch.setattr(learner, "_check", lambda fact: ([], True))  # now nothing broke: the update stays
    learner.learn(learner.state.next_turn(), "My sister's name is Oriel.")
    assert not all(torch.equal(before[k], v) for k, v in adapter_state(learner.model).items())


def test_a_persistent_optimizer_carries_its_moments_across_turns_and_a_restart(tokenizer, tmp_path, monkeypatch):
    from forgetlab.online.state import OPTIMIZER

    learner = tiny_learner(tokenizer, tmp_path, update={"persistent_optimizer": True, "steps": 2, "stop_loss": 0.0})
    learner.learn(learner.state.next_turn(), "My sister's name is Oriel.")
    opt = learner.state.optimizer
    first = {k: v["step"].item() for k, v in opt.state_dict()["state"].items()}
    assert first and set(first.values()) == {2.0} and (tmp_path / OPTIMIZER).is_file()
    moments = {k: v["exp_avg"].clone() for k, v in opt.state_dict()["state"].items()}
    monkeypatch.setattr(learner, "_check", lambda fact: (["What is 2+2? -> 5"], True))  # the gate undoes this one
    learner.learn(learner.state.next_turn(), "My brother's name is Tavi.")
    state = learner.state.optimizer.state_dict()["state"]
    assert learner.state.optimizer is opt and {v["step"].item() for v in state.values()} == {2.0}
    assert all(torch.equal(moments[k], v["exp_avg"]) for k, v in state.items())  # undone: no trace in the moments
    monkeypatch.undo()
    learner.learn(learner.state.next_turn(), "My brother's name is Tavi.")
    assert {v["step"].item() for v in learner.state.optimizer.state_dict()["state"].values()} == {4.0}
    again = tiny_learner(tokenizer, tmp_path, update={"persistent_optimizer": True, "steps": 2, "stop_loss": 0.0})
    again.learn(again.state.next_turn(), "My aunt's name is Wren.")  # a restart: the saved moments, then 2 more
    assert {v["step"].item() for v in again.state.optimizer.state_dict()["state"].values()} == {6.0}
    fresh = tiny_learner(tokenizer, tmp_path / "fresh", update={"steps": 2})
    fresh.learn(fresh.state.next_turn(), "My sister's name is Oriel.")
    assert fresh.state.optimizer is None and not (tmp_path / "fresh" / OPTIMIZER).exists()


def test_key_positions_and_the_teacher_forced_check_against_a_plain_forward(tokenizer, tiny):
    from forgetlab.batching import encode, key_positions
    from forgetlab.data.records import Example, user
    from forgetlab.online.update import key_predicted

    answer = "The capital of France is Paris."
    pos = key_positions(tokenizer, answer, "paris")
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert pos and tokenizer.decode([ids[i] for i in pos]).strip() == "Paris" and key_positions(tokenizer, answer, "Rome") == []
    # rows of different lengths in one padded batch: each verdict equals one unpadded forward's argmax at the key
    rows = [(Example(user("What is the capital of France?"), answer), "Paris"),
            (Example(user("Hi"), "Your sister's name is Oriel."), "Oriel"),
            (Example(user("Name a colour, please, any colour you like."), "Blue."), "Blue"),
            (Example(user("Hi"), "Nothing here."), "Oriel")]
    got = key_predicted(tiny, tokenizer, rows)
    by_hand = []
    for ex, key in rows:
        enc = encode(tokenizer, ex, 512)
        with torch.no_grad():
            logits = tiny(input_ids=torch.tensor([enc.input_ids])).logits[0]
        start = next(i for i, lab in enumerate(enc.labels) if lab != -100)  # the first answer token's index
        keys = key_positions(tokenizer, ex.target, key)
        by_hand.append(bool(keys) and all(int(logits[start + i - 1].argmax()) == enc.input_ids[start + i] for i in keys))
    assert got == by_hand and got[3] is False


def test_each_fact_update_rehearses_other_stored_facts_in_turn(tokenizer, tmp_path, monkeypatch):
    learner = tiny_learner(tokenizer, tmp_path, update={"steps": 1, "rehearse": 2})
    seen = []
    real = learner._update
    monkeypatch.setattr(learner, "_update", lambda ex, *a, **kw: seen.append(ex) or real(ex, *a, **kw))
    statements = ["My sister's name is Oriel.", "I live in Marrowick.", "My dog's name is Biscotti.",
                  "My cat is named Pixel."]
    for text in statements + statements[:2]:
        learner.learn(learner.state.next_turn(), text)
    own = 4  # three question forms and the statement
    assert [len(ex) for ex in seen] == [own, own + 1, own + 2, own + 2, own + 2, own + 2]
    values = {"Oriel", "Marrowick", "Biscotti", "Pixel"}
    rehearsed = [{v for v in values if any(v in e.target for e in ex[own:])} for ex in seen]
    assert rehearsed[1] == {"Oriel"} and rehearsed[2] == {"Oriel", "Marrowick"}
    assert all(values - {v} >= r for v, r in zip(["Pixel", "Oriel", "Marrowick"], rehearsed[3:], strict=True))
    assert set().union(*rehearsed[2:]) == values  # round robin: within four updates every fact came round


def test_a_share_of_the_rehearsed_facts_are_the_most_recently_stored(tokenizer, tmp_path, monkeypatch):
    learner = tiny_learner(tokenizer, tmp_path, update={"steps": 1, "rehearse": 2, "rehearse_recent": 0.5})
    seen = []
    real = learner._update
    monkeypatch.setattr(learner, "_update", lambda ex, *a, **kw: seen.append(ex) or real(ex, *a, **kw))
    for text in ["My sister's name is Oriel.", "I live in Marrowick.", "My dog's name is Biscotti.",
                 "My cat is named Pixel.", "I live in Marrowick.", "My sister's name is Oriel."]:
        learner.learn(learner.state.next_turn(), text)
    own = 4  # three question forms and the statement; then the one most recent other fact, then one in turn
    first = [next(v for v in ("Oriel", "Marrowick", "Biscotti", "Pixel") if v in ex[own].target) for ex in seen[3:]]
    # turn 4 (Pixel): Biscotti was stored last; turn 5 (Marrowick again): Pixel; turn 6 (Oriel again): Marrowick
    assert first == ["Biscotti", "Pixel", "Marrowick"]
    assert all(len(ex) == own + 2 and ex[own].target != ex[own + 1].target for ex in seen[3:])


@pytest.mark.parametrize("retry, verdicts, kept", [
    (True, [["10 times 10 -> no longer '100'"], []], True),  # the second try keeps the control: kept
    (True, [["10 times 10 -> no longer '100'"]] * 2, False),  # it breaks it again: undone
    (False, [["10 times 10 -> no longer '100'"]], False),  # no second try: undone at once
])
def test_an_update_that_breaks_a_control_is_tried_again_with_the_controls_beside_it(tokenizer, tmp_path, monkeypatch,
                                                                                      retry, verdicts, kept):
    from forgetlab.data.records import Example, user
    from forgetlab.model import adapter_state

    learner = tiny_learner(tokenizer, tmp_path, update={"steps": 1}, gate={"controls": 0, "retry": retry})
    learner.controls, learner.control_answers = [Example(user("What is 10 times 10?"), "100")], ["It is 100."]
    sizes, real = [], learner._train
    monkeypatch.setattr(learner, "_train", lambda ex, *a: sizes.append(len(ex)) or real(ex, *a))
    answers = iter(verdicts)
    monkeypatch.setattr(learner, "_check", lambda fact: (next(answers), True))
    start = adapter_state(learner.model)
    [up] = learner.learn(1, "My sister's name is Oriel.").updates
    assert sizes == ([4, 5] if retry else [4])  # the second try: the fact's 4 rows and the control
    assert (up.retried, up.kept, up.broken) == (retry, kept, 0 if kept else 1)
    after = adapter_state(learner.model)
    unchanged = all(torch.equal(after[k], start[k]) for k in start)
    assert unchanged == (not kept)  # undone: the adapter exactly as it was

def test_no_answer_is_generated_while_an_update_runs(tokenizer, tmp_path):
    learner = tiny_learner(tokenizer, tmp_path, update={"steps": 3, "stop_loss": 0.0})
    updating, overlaps, worker = threading.Event(), [], []
    steps = learner._steps

    def traced(*a, **kw):
        worker.append(threading.current_thread())
        updating.set()
        try:
            return steps(*a, **kw)
        finally:
            updating.clear()

    learner._steps = traced
    real_forward = learner.model.forward

    def forward(*a, **kw):
        if updating.is_set() and threading.current_thread() is threading.main_thread():
            overlaps.append(time.perf_counter())
        return real_forward(*a, **kw)

    learner.model.forward = forward
    for text in ("My sister's name is Oriel.", "I live in Marrowick."):
        learner.submit(text)
    answered = 0
    while learner.pending:
        learner.holder.complete([{"role": "user", "content": "hello"}], max_tokens=3)
        answered += 1
    learner.wait()
    assert worker and worker[0] is not threading.main_thread() and answered > 0
    assert overlaps == []


def test_a_restart_resumes_the_adapter_memory_and_turns(tokenizer, tmp_path):
    from forgetlab.model import adapter_state

    learner = tiny_learner(tokenizer, tmp_path)
    learner.submit("My sister's name is Oriel.")
    learner.submit("I live in Marrowick.")
    learner.wait()
    saved = adapter_state(learner.model)
    again = tiny_learner(tokenizer, tmp_path)  # a new process would do the same: load, then restore
    assert all(torch.equal(saved[k], v) for k, v in adapter_state(again.model).items())
    assert [f["value"] for f in again.memory.all()] == ["Oriel", "Marrowick"] and again.state.turn == 2
    assert again.submit("My dog's name is Rex.") == 3
    again.wait()
    again.reset()
    assert again.memory.all() == [] and all(float(v.abs().sum()) == 0 for k, v in adapter_state(again.model).items()
                                            if "lora_B" in k)


def test_the_adapter_starts_from_the_seed_whatever_ran_before(tokenizer, tmp_path):
    from forgetlab.model import adapter_state

    def lora_a(learner):
        return {k: v for k, v in adapter_state(learner.model).items() if "lora_A" in k}

    first = lora_a(tiny_learner(tokenizer, tmp_path / "a"))
    torch.rand(1000)  # the global generator moves on; the next learner must not see it
    again, other = lora_a(tiny_learner(tokenizer, tmp_path / "b")), lora_a(tiny_learner(tokenizer, tmp_path / "c", seed=1))
    assert first and all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_a_state_learned_with_other_lora_settings_names_them(tokenizer, tmp_path):
    from forgetlab.errors import UserError

    learner = tiny_learner(tokenizer, tmp_path)
    learner.submit("My sister's name is Oriel.")
    learner.wait()
    with pytest.raises(UserError, match="lora.top_layers"):  # all layers saved, the top half asked for: no fit
        tiny_learner(tokenizer, tmp_path, lora={"rank": 8, "alpha": 16, "top_layers": 0.5,
                                                "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}).wait()


def test_scripted_chat_learns_and_shows_its_facts(tiny_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("My sister's name is Oriel.\n/facts\nhello there\n/metrics\n"
                                                 "/forget 1\n/facts\n/reset learned\n/quit\n"))
    r = call_main(capsys, "chat", "--learn", "--max-tokens", "4", "--set", f"model.name={tiny_dir}",
                  "--set", "update.steps=2", "--set", "gate.controls=0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("bundled> ") == 2
    assert "[1] My sister's name is Oriel." in r.stdout and "(fact 1 removed from the memory)" in r.stdout
    assert "kl_to_start" in r.stdout and "(no facts yet)" in r.stdout and "everything learned forgotten" in r.stdout


def test_online_eval_writes_its_run_directory(tiny_dir, tmp_path, capsys):
    facts = tmp_path / "facts.jsonl"
    facts.write_text("\n".join(json.dumps(f) for f in [
        {"statement": "My sister's name is Oriel.", "probes": [{"question": "Who is my sister?", "keys": ["Oriel"]}],
         "inverse": [{"question": "Who is Oriel?", "keys": ["sister"]}]},
        {"statement": "I live in Marrowick.", "probes": [{"question": "What town is my home?", "keys": ["Marrowick"]}]}]))
    locality = tmp_path / "locality.txt"
    locality.write_text("What is the capital of Peru?\n\nName a primary colour.\n")
    r = call_main(capsys, "online-eval", "--facts", str(facts), "--repeats", "2", "--out", str(tmp_path / "runs"),
                  "--model", str(tiny_dir), "--set", "update.steps=2", "--set", "metrics_every=2",
                  "--set", "gate.controls=0", "--set", "max_new_tokens=4", "--locality", str(locality))
    assert r.returncode == 0, r.stderr
    [run] = (tmp_path / "runs").glob("*online-eval*")
    m = json.loads((run / "metrics.json").read_text())
    assert m["summary"]["facts"] == 2 and m["summary"]["turns"] == 6  # 4 statements + 2 chit-chat turns
    assert [f["stored"] for f in m["facts"]] == [True, True] and len(m["curve"]) == 3
    for name in ("facts.csv", "curve.csv", "locality.csv", "report.html", "curve.png", "state/memory.sqlite"):
        assert (run / name).is_file(), name
    assert "generalisation" in r.stdout and "Facts at the end of the stream" in r.stdout
    import csv

    with open(run / "locality.csv") as f:
        assert [row["prompt"] for row in csv.DictReader(f)] == ["What is the capital of Peru?", "Name a primary colour."]


def test_seed_preset_runs_with_the_seed_settings(tiny_dir, tmp_path, capsys):
    import yaml

    r = call_main(capsys, "online-eval", "--preset", "seed", "--repeats", "1", "--out", str(tmp_path / "runs"),
                  "--model", str(tiny_dir), "--set", "gate.controls=0", "--set", "max_new_tokens=2",
                  "--set", "metrics_every=0")
    assert r.returncode == 0, r.stderr
    [run] = (tmp_path / "runs").glob("*online-eval*")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["lora"]["rank"] == 4 and cfg["lora"]["targets"] == ["q_proj", "v_proj"] and cfg["update"]["forms"] == 0
    m = json.loads((run / "metrics.json").read_text())
    updates = [json.loads(line) for line in (run / "state" / "turns.jsonl").read_text().splitlines()]
    assert m["summary"]["facts"] == 16 and all(u["steps"] == 1 for t in updates for u in t["updates"] if u["kind"] == "fact")


@pytest.mark.parametrize("content,message", [
    ('{"statement": "My name is Ana.", "probes": [{"question": "Who am I?"}]}', "record 1 probes[0]: expected"),
    ('{"statment": "x"}', "record 1: field 'statement' must be a non-empty string"),
    ('{"statement": "x", "colour": 1}', "unknown field 'colour'"),
    ("not json", "line 1: not valid JSON"),
])
def test_bad_facts_files_are_one_line_exit_2(tmp_path, capsys, content, message):
    facts = tmp_path / "f.jsonl"
    facts.write_text(content)
    r = call_main(capsys, "online-eval", "--facts", str(facts), "--out", str(tmp_path / "runs"))
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("online,message", [
    ({"detect": {"patterns": [{"name": "x", "pattern": "my (", "relation": "r", "questions": ["q"], "answer": "a"}]}},
     "bad regex"),
    ({"detect": {"patterns": [{"name": "x", "pattern": "my (?P<value>.+)", "relation": "r", "questions": ["q"],
                               "answer": "a", "colour": "red"}]}}, "unknown key"),
    ({"update": {"lr_floor": 1.0, "lr_cap": 0.1}}, "lr_floor must not exceed"),
])
def test_bad_learner_config_is_one_line_exit_2(tmp_path, capsys, online, message):
    import yaml

    path = tmp_path / "online.yaml"
    path.write_text(yaml.safe_dump({"online": online}))
    r = call_main(capsys, "online-eval", "--config", str(path), "--out", str(tmp_path / "runs"))
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_serve_learns_from_each_turn_through_the_openai_client(tokenizer, tmp_path):
    import openai

    from forgetlab.serve import create_app

    from .test_serve import http, serving

    learner = tiny_learner(tokenizer, tmp_path, update={"steps": 2})
    with serving(create_app(learner.holder, learner)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        said = [{"role": "user", "content": "My sister's name is Oriel."}]
        raw = client.chat.completions.with_raw_response.create(model="tiny", messages=said, max_tokens=3)
        assert raw.headers["X-Forgetlab-Turn"] == "1" and raw.parse().choices[0].message.content is not None
        stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "I live in Oslo."}],
                                                max_tokens=3, stream=True)
        assert [c for c in stream]
        quiet = client.chat.completions.with_raw_response.create(
            model="tiny", messages=[{"role": "user", "content": "My dog's name is Rex."}], max_tokens=3,
            extra_body={"learn": False})
        assert "X-Forgetlab-Turn" not in quiet.headers
        status = http("POST", f"{url}/v1/learning/wait").json()
        assert status["queue"] == 0 and status["turns_learned"] == 2 and status["facts_stored"] == 2
        facts = http("GET", f"{url}/v1/memory").json()["data"]
        assert [f["value"] for f in facts] == ["Oriel", "Oslo"]
        assert http("DELETE", f"{url}/v1/memory/{facts[0]['id']}").json() == {"id": facts[0]["id"], "deleted": True}
        gone = http("DELETE", f"{url}/v1/memory/999")
        assert gone.status_code == 404 and "no fact 999" in gone.json()["error"]["message"]
        bad = http("POST", f"{url}/v1/chat/completions", json.dumps(
            {"model": "tiny", "messages": said, "learn": "maybe"}).encode())
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "learn"
        assert http("GET", f"{url}/v1/learning").json()["facts_stored"] == 1
        refused = http("POST", f"{url}/admin/reload")
        assert refused.status_code == 409 and "restart the server" in refused.json()["error"]["message"]
    off = create_app(learner.holder)  # without --learn the learning routes say how to turn it on
    from fastapi.testclient import TestClient

    r = TestClient(off).get("/v1/learning")
    assert r.status_code == 404 and "--learn" in r.json()["error"]["message"]


def test_top_layers_adapts_only_the_top_share_and_back_propagates_no_further(tokenizer):
    from forgetlab.config import LoraSettings
    from forgetlab.model import add_trainable_adapter, trainable_named

    from .conftest import tiny_llama

    model = add_trainable_adapter(tiny_llama(len(tokenizer), layers=4), "online",
                                  LoraSettings(rank=2, alpha=4, dropout=0.0, targets=("q_proj", "v_proj"), top_layers=0.5))
    names = [n for n, _ in trainable_named(model)]
    layers = sorted({int(n.split(".layers.")[1].split(".")[0]) for n in names})
    assert layers == [2, 3] and len(names) == 2 * 2 * 2  # two layers × q, v × A, B
    ids = torch.tensor([[5, 6, 7, 8]])
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    assert all(float(p.grad.abs().sum()) > 0 for n, p in trainable_named(model) if "lora_B" in n)
