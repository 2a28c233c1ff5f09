"""What keeps a session's knowledge: the hold-out, rephrasings, settings, replay, distillation (tiny model)."""

import math
from pathlib import Path

import pytest
import torch

from forgetlab.config import SessionConfig
from forgetlab.sessions.data import load_examples, split_heldout
from forgetlab.sessions.settings import resolve

EXAMPLES = Path(__file__).parents[1] / "examples" / "sessions"
CS = EXAMPLES / "cs_dept.json"


@pytest.mark.parametrize("name, share, held", [("cs_dept.json", 0.2, 8), ("cs_dept.json", 0.6, 20),
                                               ("cs_faq.json", 0.2, 0), ("housing_faq.json", 0.5, 0)])
def test_the_holdout_never_drops_a_fact(name, share, held):
    examples = load_examples(EXAMPLES / name)
    train, checks = split_heldout(examples, share, seed=0)
    assert len(checks) == held and len(train) + len(checks) == len(examples)
    assert {ex.target for ex in train} == {ex.target for ex in examples}  # every fact is trained, however many held
    assert split_heldout(examples, share, seed=0) == (train, checks)


def test_files_without_paraphrases_are_checked_on_untrained_rephrasings():
    from forgetlab.recipes.session import session_data
    from forgetlab.sessions.data import question_of

    examples = load_examples(EXAMPLES / "cs_faq.json")
    job = session_data(examples, SessionConfig(rephrase=2), None)
    assert job.records == 22 and len(job.rows) == 66 and len(job.checks) == 22
    trained = {question_of(ex) for ex in job.rows}
    assert all(question_of(ex) not in trained for ex in job.checks)  # the check questions were not trained
    assert [ex.target for ex in job.checks] == [ex.target for ex in examples]
    assert job.check_source.startswith("22 questions rephrased by forgetlab")
    assert len(session_data(examples, SessionConfig(rephrase=0), None).rows) == 22
    twins = session_data(load_examples(CS), SessionConfig(rephrase=1), None)
    assert len(twins.checks) == 8 and "paraphrases held out" in twins.check_source
    given = session_data(examples, SessionConfig(), str(EXAMPLES / "cs_faq_paraphrases.json"))
    assert len(given.checks) == 22 and given.records == 22 and "your file" in given.check_source


def test_rephrasings_are_distinct_and_deterministic():
    from forgetlab.sessions.rephrase import acronyms, rephrasings

    known = acronyms(["Where is the CS main office?", "The Computer Science office."])
    assert known == {"CS": "Computer Science"}
    forms = rephrasings("Where is the CS main office?", 4, seed=0, known_acronyms=known)
    assert len(forms) == len({f.lower() for f in forms}) == 4 and "Where is the CS main office?" not in forms
    assert "Where is the Computer Science main office?" in rephrasings("Where is the CS main office?", 8, 0, known)
    assert forms == rephrasings("Where is the CS main office?", 4, seed=0, known_acronyms=known)
    assert "Which person is the chair of the department?" in rephrasings("Who is the chair of the department?", 8, 0)


@pytest.mark.parametrize("n, rephrase, rank, epochs, max_length", [
    (40, 0, 8, 10, 512), (99, 0, 8, 10, 512), (100, 0, 16, 5, 640), (500, 0, 16, 5, 640), (501, 0, 32, 3, 768),
    (40, 3, 8, 5, 512), (200, 3, 16, 3, 640), (600, 3, 32, 2, 768)])
def test_settings_follow_the_data_size(n, rephrase, rank, epochs, max_length):
    rows = n * (1 + rephrase)
    s = resolve(SessionConfig(rephrase=rephrase), n, [900] + [40] * (rows - 1), old_rows=0)
    assert (s.rank, s.alpha, s.epochs, s.max_length) == (rank, 2.0 * rank, epochs, max_length)
    assert s.batch_size * s.grad_accum == 8 and s.batch_size == 4  # a row over 256 tokens: 4 × 2
    assert s.over_length == 1  # the 900-token row is cut, and counted
    assert s.total_steps == math.ceil(math.ceil(rows / 4) / 2) * epochs
    assert s.warmup_steps == min(round(0.1 * s.total_steps), 50)
    assert s.replay == 0 and s.replay_per_batch == 0 and s.source["replay"] == "-"


@pytest.mark.parametrize("n, rephrase, rank, epochs, batch, accum, max_length", [
    (40, 0, 8, 10, 2, 4, 512), (40, 3, 8, 10, 2, 4, 512), (300, 3, 16, 5, 2, 4, 640), (600, 0, 32, 3, 4, 2, 768)])
def test_the_size_tiers_preset_is_the_designs_table(n, rephrase, rank, epochs, batch, accum, max_length):
    rows = n * (1 + rephrase)
    s = resolve(SessionConfig(rephrase=rephrase, preset="size-tiers"), n, [900] + [40] * (rows - 1), old_rows=0)
    assert (s.rank, s.alpha, s.epochs, s.batch_size, s.grad_accum, s.max_length) == (
        rank, 2.0 * rank, epochs, batch, accum, max_length)
    assert s.warmup_steps == min(round(0.1 * rows), 50, s.total_steps)  # 0.1 × examples, not steps
    assert s.gradient_checkpointing and s.source["epochs"] == "size-tiers" == s.source["gradient_checkpointing"]
    assert {k: v for k, v, _ in s.table("merge")}["gradient checkpointing"] == "on"
    # what is given still wins over the preset
    s = resolve(SessionConfig(preset="size-tiers", epochs=2, batch_size=8), n, [40] * rows, old_rows=0)
    assert (s.epochs, s.batch_size, s.source["epochs"]) == (2, 8, "set")


def test_the_size_tiers_preset_asks_for_bf16_only_where_the_device_runs_it(monkeypatch):
    from forgetlab.recipes import session

    assert session.tier_model(SessionConfig()).dtype == "auto"  # the default leaves the dtype alone
    assert session.tier_model(SessionConfig(preset="size-tiers")).dtype == "float32"  # this CPU
    for device in ("cuda", "mps"):
        monkeypatch.setattr(session, "resolve_device", lambda pref, d=device: torch.device(d))
        assert session.tier_model(SessionConfig(preset="size-tiers")).dtype == "bfloat16"
    given = SessionConfig(preset="size-tiers", model={"dtype": "float32"})
    assert session.tier_model(given).dtype == "float32"


def test_settings_overrides_and_short_records():
    s = resolve(SessionConfig(rank=4, epochs=2, batch_size=2, rephrase=0), 3, [30, 40, 50], 0)
    assert (s.rank, s.alpha, s.epochs, s.batch_size, s.grad_accum) == (4, 8.0, 2, 2, 4)
    assert s.max_length == 50 and s.over_length == 0  # never longer than the longest record needs
    assert s.source["rank"] == "set" and s.source["alpha"] == "auto"
    assert s.lora.rank == 4 and s.train.epochs == 2 and s.train.grad_accum == 4


@pytest.mark.parametrize("old_rows, new_rows, replay, share, per_batch", [
    (20, 80, None, 0.2, 2), (80, 80, None, 0.5, 8), (160, 80, None, 0.5, 8), (160, 80, 0.2, 0.2, 2),
    (80, 80, 0.0, 0.0, 0)])
def test_replay_scales_with_the_old_rows(old_rows, new_rows, replay, share, per_batch):
    s = resolve(SessionConfig(replay=replay, rephrase=0), new_rows, [30] * new_rows, old_rows)
    assert s.replay == pytest.approx(share) and s.replay_per_batch == per_batch
    assert s.source["replay"] == ("auto" if replay is None else "set")


def test_replayed_rows_come_round_evenly_and_resume_exactly():
    from forgetlab.sessions.loss import replay_indices

    # 10 old rows, 4 per batch: batches 0-4 take 20 rows = two full permutations of the 10.
    taken = [replay_indices(10, 4, b, seed=3) for b in range(5)]
    flat = [i for b in taken for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert taken[3] == replay_indices(10, 4, 3, seed=3)  # batch 3 draws the same rows when resumed
    assert taken != [replay_indices(10, 4, b, seed=4) for b in range(5)]


def test_each_batch_carries_the_replayed_rows_and_distillation_is_zero_at_the_previous_session(tokenizer, tiny,
                                                                                               monkeypatch):
    from forgetlab.batching import collate, encode
    from forgetlab.data.records import Example, user
    from forgetlab.losses import nll
    from forgetlab.model import attach_lora, lora_layers
    from forgetlab.retain import TopKReference
    from forgetlab.sessions.loss import SessionLoss

    from .conftest import TINY_LORA

    old = [encode(tokenizer, Example(user(f"Old question {i}?"), f"Old answer {i}."), 64) for i in range(6)]
    new = collate([encode(tokenizer, Example(user(f"New question {i}?"), f"New answer {i}."), 64) for i in range(4)],
                  tokenizer.pad_token_id)
    model = attach_lora(tiny, TINY_LORA, adapter_name="s002")
    seen = []
    vocab = tiny.config.vocab_size  # a random model spreads its mass over the whole vocabulary: keep all of it
    previous = TopKReference.build(model, old, ["s002"], tokenizer.pad_token_id, k=vocab, batch_size=4)
    assert [r.shape for r in previous.logp] == [(len(r.labels) - r.labels.count(-100), vocab) for r in old]
    loss_fn = SessionLoss(old, 2, seed=0, pad_id=tokenizer.pad_token_id, distill=3.0, previous=previous)
    import forgetlab.sessions.loss as session_loss

    real = session_loss.with_rows
    monkeypatch.setattr(session_loss, "with_rows",
                        lambda batch, rows, pad, model=None: seen.append(len(rows)) or real(batch, rows, pad, model))
    with torch.no_grad():  # the new adapter starts at zero (B = 0): the model is the previous session's
        at_start = float(loss_fn.loss(model, new, None))
        mixed = real(new, [old[i] for i in session_loss.replay_indices(6, 2, 0, 0)], tokenizer.pad_token_id)
        assert at_start == pytest.approx(float(nll(model, mixed)), abs=1e-5)  # distillation adds nothing here
        for layer in lora_layers(model):
            layer.lora_B["s002"].weight.normal_(0, 0.5)
        moved = float(loss_fn.loss(model, new, None))
        mixed = real(new, [old[i] for i in session_loss.replay_indices(6, 2, 1, 0)], tokenizer.pad_token_id)
        assert moved > float(nll(model, mixed)) + 1e-4  # away from the previous session it is positive
    assert seen == [2, 2]  # each batch of 4 new rows carried 2 old ones


def test_session_anchors_mix_everyday_prompts_and_questions_unlike_the_general_set():
    from forgetlab.data.general import ANCHORS, QUESTION_ANCHORS, RETENTION, anchor_messages

    prompts = [m[-1]["content"] for m in anchor_messages(questions=True)]
    assert len(prompts) == 32 and len(set(prompts)) == 32 and set(prompts) == set(ANCHORS) | set(QUESTION_ANCHORS)
    assert all((p in ANCHORS) != (q in ANCHORS) for p, q in zip(prompts[::2], prompts[1::2], strict=True))
    asked = {q for q, _ in RETENTION}
    assert not asked & set(prompts)  # the yardstick is never trained towards
    assert not any(w in p.lower() for p in QUESTION_ANCHORS for w in ("capital", "chemical symbol", "wrote"))
    assert [m[-1]["content"] for m in anchor_messages()] == list(ANCHORS)  # the `kl` strategy's set is unchanged


def test_anchor_is_zero_at_the_base(tokenizer, tiny):
    from forgetlab.batching import collate
    from forgetlab.losses import nll
    from forgetlab.retain import build_anchors
    from forgetlab.sessions.loss import SessionLoss

    anchors = build_anchors(tiny, tokenizer, 64, questions=True)
    assert len(anchors.examples) == 32 and anchors.refs[0].shape[1] == tiny.config.vocab_size
    batch = collate(anchors.examples[:2], tokenizer.pad_token_id)
    with torch.no_grad():
        loss = SessionLoss([], 0, 0, tokenizer.pad_token_id, anchors=anchors, anchor_weight=5.0).loss(tiny, batch, None)
        assert float(loss) == pytest.approx(float(nll(tiny, batch)), abs=1e-5)


def test_session_compare_through_the_cli(tiny_dir, tmp_path, capsys, browser):
    import json

    from .browser import open_report
    from .conftest import call_main, run_cli

    files = [str(EXAMPLES / "cs_faq.json"), str(EXAMPLES / "housing_faq.json")]
    r = run_cli("session", "compare", *files, "--heldout", str(EXAMPLES / "cs_faq_paraphrases.json"), "--heldout",
                str(EXAMPLES / "housing_faq_paraphrases.json"), "--model", str(tiny_dir), "--out", str(tmp_path),
                "--setting", "defaults", "--setting", "plain:rephrase=0,anchor=0,distill=0",
                "--set", "session.epochs=1", "--set", "session.max_new_tokens=4", "--set", "session.lora.targets=[q_proj]",
                "--cpus-per-run", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    out = next(p for p in tmp_path.iterdir() if p.is_dir())
    result = json.loads((out / "session_compare.json").read_text())
    assert [run["status"] for run in result["runs"]] == ["complete"] * 4
    for name, rows in (("defaults", 88), ("plain", 22)):
        s = result["summary"][name]
        assert s["chain"] == [1, 2] and len(s["recall_after_own"]) == 2 and "general_last" in s
        record = json.loads((out / name / "assistant" / "sessions" / "001" / "session.json").read_text())
        assert record["data"]["rows"] == rows and record["settings"]["anchor"] == (1.0 if name == "defaults" else 0.0)
    assert "plain: recall" in r.stdout and "Settings compared" in r.stdout and "rephrase=0" in r.stdout
    assert len(open_report(browser, out / "report.html")["images"]) == 2  # each setting's retention plot
    open_report(browser, out / "plain" / "assistant" / "report.html")  # and each assistant's own page
    # Resuming a finished comparison trains nothing again.
    r = run_cli("session", "compare", "--resume", str(out))
    assert r.returncode == 0 and json.loads((out / "session_compare.json").read_text())["runs"][0]["seconds"] is None
    bad = call_main(capsys, "session", "compare", *files, "--heldout", files[0], "--model", str(tiny_dir))
    assert bad.returncode == 2 and "1 heldout files for 2 session files" in bad.stderr
    bad = call_main(capsys, "session", "compare", files[0], "--setting", "x:bogus=1", "--model", str(tiny_dir))
    assert bad.returncode == 2 and "setting 'x': bogus" in bad.stderr


def test_top_k_kl_is_the_full_kl_at_full_k_a_lower_bound_below_and_zero_at_the_reference():
    from forgetlab.losses import kl_to_reference, kl_to_top_k, top_k_reference

    g = torch.Generator().manual_seed(0)
    ref, logits = torch.randn(5, 50, generator=g) * 3, torch.randn(5, 50, generator=g) * 3
    full = float(kl_to_reference(logits, ref))
    assert float(kl_to_top_k(logits, *top_k_reference(ref, 50))) == pytest.approx(full, rel=1e-5)
    parts = [float(kl_to_top_k(logits, *top_k_reference(ref, k))) for k in (1, 5, 20)]
    assert 0 < parts[0] <= parts[1] <= parts[2] <= full + 1e-6  # coarser partitions lose information
    assert float(kl_to_top_k(ref, *top_k_reference(ref, 5))) == pytest.approx(0.0, abs=1e-6)
