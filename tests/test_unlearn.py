"""`forgetlab unlearn` and `forgetlab rtt` on tiny random models: every method runs through the one loop, the
scorers and RTT bookkeeping against hand-made numbers, the merged save, and bad input."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from .conftest import call_main

METHODS = ["ga", "gd", "whp", "fwf", "rmu", "npo", "simnpo"]


def unlearn_args(tiny_dir, out, *extra):
    return ("unlearn", "--model", str(tiny_dir), "--out", str(out), "--epochs", "1", "--save", "none",
            "--set", "general.enabled=false", "--set", "train.batch_size=16", "--set", "guard.enabled=false",
            "--set", "method.ascent_cap=null", *extra)  # a random model is past any cap: plain ascent


@pytest.mark.parametrize("method", METHODS)
def test_every_method_unlearns_a_row_through_the_loop(method, tiny_dir, tmp_path, capsys):
    r = call_main(capsys, *unlearn_args(tiny_dir, tmp_path, "--method", method, "--lora-rank", "2"))
    assert r.returncode == 0, r.stderr
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    rows = list(csv.DictReader((run / "unlearn.csv").open()))
    # measured twice an epoch but at most every second step (21 rows in batches of 16: 2 steps, checked at the
    # second; whp trains 3 wrong answers a fact: 4 steps, checked at 2 and 4), the end of the epoch in full
    per_epoch = 4 if method == "whp" else 2
    assert [(int(r["step"]), int(r["epoch"])) for r in rows] == [(0, 0)] + [(s, 1) for s in range(2, per_epoch + 1, 2)]
    assert rows[0]["method"] == method and rows[0]["lora_rank"] == "2"
    assert all(r["forget_loss"] == "" for r in rows[1:-1]) and rows[-1]["forget_loss"] != ""
    # the adapter trained: the forget loss moved (ga/gd/npo/simnpo/rmu push it up, whp/fwf train other answers)
    assert float(rows[-1]["forget_loss"]) != float(rows[0]["forget_loss"])
    state = json.loads((run / "metrics.json").read_text())
    assert state["status"] == "complete" and len(state["history"]) >= 1
    assert all(math.isfinite(h["loss"]) for h in state["history"])
    assert (run / "report.html").is_file() and (run / "unlearn.png").is_file()
    assert "forget acc" in r.stdout


def test_full_weight_rmu_trains_only_the_down_projections_below_its_layer(tiny_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    r = call_main(capsys, *unlearn_args(tiny_dir, tmp_path, "--method", "rmu", "--lora-rank", "0", "--save", "merged",
                                        "--set", "method.layer=1", "--lr", "1e-2"))
    assert r.returncode == 0, r.stderr
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    before = AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run / "model").state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1)}
    state = json.loads((run / "metrics.json").read_text())
    assert state["trainable_params"] == sum(before[k].numel() for k in changed)


def test_losses_of_the_registry_by_hand(tiny, tokenizer):
    from forgetlab.batching import collate
    from forgetlab.config import UnlearnConfig
    from forgetlab.data.unlearn import read_facts
    from forgetlab.losses import masked_mse, nll
    from forgetlab.unlearning import UnlearnContext, build_unlearning
    from forgetlab.unlearning.reference import layer_hidden

    facts = read_facts("builtin:animals")
    cfg = UnlearnConfig(method={"name": "ga", "ascent_cap": None})
    ctx = UnlearnContext(tokenizer, cfg.train, retain=read_facts("builtin:food").rows(tokenizer, 64))
    rows = facts.rows(tokenizer, 64)[:4]
    batch = collate(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        assert float(build_unlearning(cfg).loss(tiny, batch, ctx)) == pytest.approx(-float(nll(tiny, batch)))
        # the cap: each row's own mean NLL, counted up to the cap, then averaged over rows
        per_row = [float(nll(tiny, collate([r], tokenizer.pad_token_id))) for r in rows]
        cap = sorted(per_row)[1] + 1e-3  # between the rows' values: some rows are capped, some are not
        capped = build_unlearning(UnlearnConfig(method={"name": "ga", "ascent_cap": cap}))
        assert float(capped.loss(tiny, batch, ctx)) == pytest.approx(-sum(min(v, cap) for v in per_row) / 4, rel=1e-5)
        # NPO at the reference (nothing trained yet) is (2/β)·log 2 when the retain term is off
        npo = build_unlearning(UnlearnConfig(method={"name": "npo", "rc": 0.0}))
        npo.prepare(tiny, facts.rows(tokenizer, 64), ctx)
        assert float(npo.loss(tiny, batch, ctx)) == pytest.approx(2 / 0.1 * math.log(2), rel=1e-5)
        # RMU: the retain term is 0 on the frozen model; the forget term is the distance to c·u (0 when there)
        rmu = build_unlearning(UnlearnConfig(method={"name": "rmu", "layer": 1}))
        rmu.prepare(tiny, facts.rows(tokenizer, 64), ctx)
        h = layer_hidden(tiny, batch, 1)
        mask = batch["attention_mask"].clone()
        skip = ctx.cache["rmu_skip"]  # "Question:" begins every row: those tokens are neither steered nor kept
        assert tokenizer.decode(batch["input_ids"][0, :skip]) == "Question:"
        mask[:, :skip] = 0
        forget_term = masked_mse(h, ctx.cache["rmu"]["control"], mask)
        assert float(rmu.loss(tiny, batch, ctx)) == pytest.approx(float(forget_term), rel=1e-5)
        control = ctx.cache["rmu"]["control"]
        mean_norm = float(h.norm(dim=-1)[mask.bool()].mean())
        assert float(control.norm()) == pytest.approx(rmu.cfg.steering * mean_norm, rel=0.3)  # c × the layer's norm


def test_scorers_on_hand_made_numbers():
    from forgetlab.metrics.unlearning import calibrated_choice, share_correct

    assert share_correct([[0.1, 0.7, 0.2], [0.5, 0.4, 0.1]], [1, 1]) == 0.5
    # letter A is favoured everywhere: calibration divides by the mean per letter [0.6, 0.3, 0.1]
    probs = [[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1]]
    assert [max(range(3), key=p.__getitem__) for p in probs] == [0, 0, 0]
    assert calibrated_choice(probs) == [0, 1, 0]  # 0.4/0.3 > 0.5/0.6


def test_option_log_likelihood_scores_each_choice_as_a_continuation(tiny, tokenizer):
    from forgetlab.batching import collate, encode_continuation
    from forgetlab.data.records import MCQItem
    from forgetlab.evaluate import mcq_option_logprobs
    from forgetlab.losses import answer_logprobs

    # prompts and options of different lengths in one batch: each prompt's cache is shared by its options, padding
    # sits between prompt and option, and every score must equal the prompt + option row scored alone
    items = [MCQItem("What do bees make?", ("honey", "silk", "wax paper"), 0),
             MCQItem("Which animal carries its shell on its back and moves slowly?", ("snail", "a very large frog"), 0),
             MCQItem("Is ice cold?", ("yes", "no", "only in the winter months", "never"), 0)]
    got = mcq_option_logprobs(tiny, tokenizer, items, batch_size=2)
    assert [len(g) for g in got] == [3, 2, 4]
    with torch.no_grad():
        for item, scores in zip(items, got, strict=True):
            for opt, value in zip(item.options, scores, strict=True):
                row = encode_continuation(tokenizer, f"Question: {item.question}\nAnswer:", " " + opt, 64)
                lp, _ = answer_logprobs(tiny, collate([row], tokenizer.pad_token_id))
                assert value == pytest.approx(float(lp), rel=1e-4, abs=1e-4)


def test_rtt_splits_are_disjoint_fact_level_and_deterministic():
    from forgetlab.metrics.unlearning import rtt_splits

    ids = [f"f{i}" for i in range(21)] + ["f3", "f3"]  # a fact with several items stays in one split
    a, b = rtt_splits(ids, 5, 0), rtt_splits(ids, 5, 0)
    assert a == b and a != rtt_splits(ids, 5, 1)
    flat = [x for s in a for x in s]
    assert sorted(flat) == sorted(set(ids)) and len(flat) == len(set(flat))
    assert {len(s) for s in a} == {4, 5}
    with pytest.raises(ValueError):
        rtt_splits(["a", "b"], 5, 0)


def test_recovery_metrics_on_hand_made_numbers():
    from forgetlab.metrics.unlearning import recovered_share, recovery_epoch, recovery_rate

    assert recovery_rate(0.6, 0.9) == pytest.approx(2 / 3)
    assert recovered_share(0.6, 0.2, 0.8) == pytest.approx(2 / 3)
    assert math.isnan(recovered_share(0.5, 0.8, 0.8))  # nothing was removed
    assert recovery_epoch([0.3, 0.5, 0.7, 0.9], 0.8) == 3  # 0.8 × 0.8 = 0.64
    assert recovery_epoch([0.1, 0.2], 0.8) is None


def test_rtt_text_and_curves_on_a_tiny_model(tiny_dir, tokenizer):
    from forgetlab.config import ModelConfig, RTTConfig
    from forgetlab.data.unlearn import read_facts
    from forgetlab.model import load_base
    from forgetlab.recipes.rtt import rtt_curves, rtt_text

    facts = read_facts("builtin:animals")
    item = facts.mcq()[0]
    text = rtt_text(item)
    assert text.startswith(item.question) and text.endswith(f"Answer: {'ABCD'[item.answer]}. {item.options[item.answer]}")
    model, tok = load_base(ModelConfig(name=str(tiny_dir)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    curves = rtt_curves(model, tok, facts.mcq(), RTTConfig(lrs=(1e-2,), epochs=2, holdout_splits=2), "t")
    assert list(curves) == [1e-2] and len(curves[1e-2]) == 3
    assert all(0 <= x <= 1 for x in curves[1e-2])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # restored after each run


def test_merged_save_equals_the_adapter_model(tiny_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from forgetlab.config import ModelConfig, UnlearnConfig
    from forgetlab.model import attach_lora, load_base
    from forgetlab.recipes.unlearn import save_model

    cfg = UnlearnConfig(lora={"rank": 4}, model={"name": str(tiny_dir)})
    model, tok = load_base(ModelConfig(name=str(tiny_dir)))
    torch.manual_seed(1)
    model = attach_lora(model, cfg.lora.settings())
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    ids = torch.tensor([[1, 5, 9, 300, 42, 7]])
    with torch.no_grad():
        want = model(input_ids=ids).logits
    state: dict = {"method": "gd"}
    save_model(model, tok, cfg, tmp_path, state)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    with torch.no_grad():
        got = loaded(input_ids=ids).logits
    assert (got - want).abs().max() < 1e-5
    assert state["saved"] == str(tmp_path / "model")


def test_learn_first_teaches_the_task_then_unlearns_part_of_it(tiny_dir, tmp_path, capsys):
    r = call_main(capsys, *unlearn_args(tiny_dir, tmp_path, "--learn-first", "facts:people", "--set", "learn.epochs=1"))
    assert r.returncode == 0, r.stderr
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    state = json.loads((run / "metrics.json").read_text())
    assert state["sets"]["forget"]["facts"] == 12 and state["sets"]["retain"]["facts"] == 12  # 8 entities × 3, half
    assert (run / "original" / "config.json").is_file()


def test_unlearn_list_and_methods(capsys):
    r = call_main(capsys, "unlearn", "--list")
    assert r.returncode == 0 and all(m in r.stdout for m in METHODS + ["ria"])
    r = call_main(capsys, "methods")
    assert "unlearning methods" in r.stdout and "simnpo" in r.stdout and "olora" in r.stdout


def _write(path, lines):
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def test_data_formats_are_read_as_they_are(tmp_path, tokenizer):
    from forgetlab.data.unlearn import read_facts

    mcq = read_facts(str(_write(tmp_path / "m.jsonl", [{"question": "Q1?", "choices": ["a", "b", "c"], "answer": 2},
                                                        {"question": "Q2?", "choices": ["x", "y"], "answer": 0}])))
    assert [it.answer for it in mcq.mcq()] == [2, 0] and mcq.facts[0].wrong == ("a", "b")
    corpus = read_facts("file:" + str(_write(tmp_path / "c.jsonl", [
        {"text": "The sky is blue.", "correct_answer": "blue", "wrong_answers": ["green", "red"]}])))
    assert corpus.mcq() == [] and corpus.texts() == ["The sky is blue."]
    rows = corpus.wrong_rows(tokenizer, 64, every=True, seed=0)
    assert [tokenizer.decode(r.input_ids) for r in rows] == ["The sky is green.", "The sky is red."]
    assert len(corpus.wrong_rows(tokenizer, 64, every=False, seed=0)) == 1
    tofu = read_facts(str(_write(tmp_path / "t.jsonl", [{"question": "Who?", "answer": "Ann"},
                                                         {"question": "Where?", "answer": "Oslo"}])))
    assert [e.target for e in tofu.qa()] == ["Ann", "Oslo"]
    assert [tokenizer.decode(r.input_ids) for r in tofu.wrong_rows(tokenizer, 64, every=True, seed=0)] == [
        "Question: Who?\nAnswer: Oslo", "Question: Where?\nAnswer: Ann"]  # wrong answers from the other facts
    own = read_facts(str(_write(tmp_path / "o.jsonl", [{"question": "Q?", "options": ["a", "b"], "answer": "B"}])))
    assert own.mcq()[0].answer == 1


@pytest.mark.parametrize("args, message", [
    (["--method", "forgetful"], "unknown unlearning method 'forgetful'; valid methods: ga, gd"),
    (["--lora-rank", "-1"], "lora.rank: Input should be greater than or equal to 0"),
    (["--forget", "{mcq_bad}"], "field 'answer' is 4, not a choice index 0..3"),
    (["--forget", "{empty}"], "no records"),
    (["--forget", "{missing}"], "file not found"),
    (["--forget", "{binary}"], "not UTF-8 text"),
    (["--method", "whp", "--forget", "{corpus}", "--forget-eval", "builtin:animals"], "has no wrong answers to train on"),
    (["--set", "rtt.holdout_splits=5"], "must be fewer than rtt.splits"),
    (["--save", "adapter", "--lora-rank", "0"], "save=adapter needs a LoRA run"),
    (["--rtt", "--forget", "{two_mcq}"], "--rtt needs at least 5 MCQ facts"),
])
def test_bad_unlearn_input_is_one_line_exit_2_and_writes_nothing(args, message, tiny_dir, tmp_path, capsys):
    files = {"mcq_bad": _write(tmp_path / "bad.jsonl", [{"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 4}]),
             "empty": _write(tmp_path / "empty.jsonl", []), "missing": tmp_path / "nope.jsonl",
             "corpus": _write(tmp_path / "c.jsonl", [{"text": "Bees make honey."}]),
             "two_mcq": _write(tmp_path / "two.jsonl", [{"question": f"Q{i}?", "choices": ["a", "b"], "answer": 0}
                                                        for i in range(2)])}
    files["binary"] = tmp_path / "bin.jsonl"
    files["binary"].write_bytes(b"\xff\xfe\x00bad")
    args = [a.format(**files) for a in args]
    out = tmp_path / "runs"
    r = call_main(capsys, *unlearn_args(tiny_dir, out, *args))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists() or not [p for p in out.iterdir() if p.is_dir()]


def test_bad_rtt_input(tmp_path, capsys):
    r = call_main(capsys, "rtt", "--model", str(tmp_path), "--forget", "builtin:animals")
    assert r.returncode == 2 and "not a model directory" in r.stderr
    r = call_main(capsys, "rtt", "--model", str(tmp_path / "nope"))
    assert r.returncode == 2 and "not a directory" in r.stderr


def test_max_samples_keeps_the_first_forget_facts_and_measures_on_them():
    from forgetlab.config import UnlearnConfig
    from forgetlab.recipes.unlearn import fact_sets

    every = fact_sets(UnlearnConfig())
    sets = fact_sets(UnlearnConfig(max_samples=5))
    assert [f.fact_id for f in sets["forget"].facts] == [f.fact_id for f in every["forget"].facts[:5]]
    assert sets["forget_eval"] is sets["forget"] and len(sets["retain"].facts) == len(every["retain"].facts)


def test_freeze_layers_leaves_the_first_layers_as_they_were(tiny_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    r = call_main(capsys, *unlearn_args(tiny_dir, tmp_path, "--method", "ga", "--lora-rank", "0", "--lr", "1e-3",
                                        "--save", "merged", "--set", "freeze_layers=1"))
    assert r.returncode == 0, r.stderr
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    before = AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run / "model").state_dict()
    layer0 = [k for k in before if ".layers.0." in k]
    layer1 = [k for k in before if ".layers.1." in k]
    assert layer0 and all(torch.equal(before[k], after[k]) for k in layer0)
    assert any(not torch.equal(before[k], after[k]) for k in layer1)


def test_k_shot_option_scores_read_the_solved_items_first(tiny, tokenizer):
    from forgetlab.data.records import MCQItem
    from forgetlab.data.unlearn import qa_prompt
    from forgetlab.evaluate import mcq_option_logprobs

    items = [MCQItem("What do bees make?", ("honey", "milk"), 0, {}), MCQItem("What barks?", ("a cat", "a dog"), 1, {}),
             MCQItem("What is ice?", ("frozen water", "hot sand"), 0, {})]
    plain, one = mcq_option_logprobs(tiny, tokenizer, items), mcq_option_logprobs(tiny, tokenizer, items, shots=1)
    assert plain != one
    # item 0 with one shot: item 1 solved before it
    prompt = f"{qa_prompt('What barks?')} a dog\n\n{qa_prompt('What do bees make?')}"
    for j, option in enumerate(items[0].options):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        o = tokenizer(" " + option, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = tiny(torch.tensor([p + o])).logits[0].float().log_softmax(-1)
        expected = sum(float(logp[len(p) - 1 + t, o[t]]) for t in range(len(o)))
        assert one[0][j] == pytest.approx(expected, abs=1e-4)
