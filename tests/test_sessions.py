"""Sessions on the tiny model: data checks, settings, merge equivalence, rollback, resume, export, chat."""

import json
from pathlib import Path

import pytest
import torch

from forgetlab.config import ModelConfig, SessionConfig
from forgetlab.errors import UserError
from forgetlab.recipes import session as session_recipe
from forgetlab.recipes.session import train_session
from forgetlab.sessions.answers import tidy
from forgetlab.sessions.compose import load_chain
from forgetlab.sessions.store import Store

from .conftest import call_main, run_cli

EXAMPLES = Path(__file__).parents[1] / "examples" / "sessions"
CS, HOUSING = EXAMPLES / "cs_dept.json", EXAMPLES / "housing.json"


def fast_cfg(tiny_dir, **kw) -> SessionConfig:
    base = {"model": {"name": str(tiny_dir)}, "epochs": 2, "lr": 1e-2, "dropout": 0.0, "max_new_tokens": 4,
            "targets": ("q_proj", "v_proj")}
    return SessionConfig.model_validate({**base, **kw})


def logits(model, tok) -> torch.Tensor:
    ids = tok("Who chairs the computer science department?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def test_bad_records_are_all_named_and_nothing_is_created(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Q1", "response": "A1"}\n{"instruction": "Q2"}\n'
                   '{"instruction": "", "response": "A3"}\n{"messages": [{"role": "user", "content": "hi"}]}\n')
    r = call_main(capsys, "session", "train", str(bad), "--assistant", "a", "--home", str(tmp_path / "home"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and "3 bad records" in line
    assert "line 2: field 'response'" in line and "line 3: field 'instruction'" in line and "line 4: field 'messages'" in line
    assert not (tmp_path / "home").exists()
    for args, expected in ((["missing.json"], "not found"), ([], "no data file given")):
        r = call_main(capsys, "session", "train", *args, "--assistant", "a", "--home", str(tmp_path / "home"))
        assert r.returncode == 2 and expected in r.stderr, r.stderr
    r = call_main(capsys, "session", "train", str(CS), "--assistant", "bad/name", "--home", str(tmp_path / "home"))
    assert r.returncode == 2 and "assistant name" in r.stderr


def test_tidy_keeps_urls_emails_and_code():
    cases = [
        ("Apply at https://cs.msu.example.edu/grad/apply. The form asks", True,
         "Apply at https://cs.msu.example.edu/grad/apply."),
        ("Write to cs-advising@msu.example.edu. We answer within", True, "Write to cs-advising@msu.example.edu."),
        ("See https://cs.msu.example.edu/courses", True, "See https://cs.msu.example.edu/courses"),
        ("Run `pip install forgetlab==0.1` first. Then", True, "Run `pip install forgetlab==0.1` first."),
        ("It costs 2,350 dollars. Dr. Oyelaran teaches it. And", True, "It costs 2,350 dollars. Dr. Oyelaran teaches it."),
        ("Room 3127.\nUser: and the other room?", False, "Room 3127."),
        ("```python\nprint('a.b')\n", True, "```python\nprint('a.b')"),
        ("December 3. More text", False, "December 3. More text"),
    ]
    for text, truncated, expected in cases:
        assert tidy(text, truncated) == expected, text


def test_two_sessions_merge_equivalence_rollback_and_export(tiny_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from forgetlab.model import load_base
    from forgetlab.sessions.manage import export, rollback

    store = Store(tmp_path, "msu")
    first = train_session(store, fast_cfg(tiny_dir), str(CS))
    assert first["id"] == 1 and first["parent"] is None and store.info()["active"] == 1
    # Merge equivalence: the merged chain answers exactly like the base with the adapter applied unmerged.
    base, tok = load_base(ModelConfig(name=str(tiny_dir)))
    unmerged = PeftModel.from_pretrained(base, str(store.session_dir(1) / "adapter"))
    merged, _ = load_chain(store, [1], ModelConfig(name=str(tiny_dir)), "merge")
    after_1 = logits(merged, tok)
    assert torch.allclose(logits(unmerged, tok), after_1, atol=1e-5)
    assert not torch.allclose(logits(load_base(ModelConfig(name=str(tiny_dir)))[0], tok), after_1, atol=1e-3)

    second = train_session(store, fast_cfg(tiny_dir, replay=0.5), str(HOUSING))
    assert second["parent"] == 1 and store.info()["active"] == 2
    metrics = json.loads((store.session_dir(2) / "metrics.json").read_text())
    assert set(metrics["retention"]) == {"1", "2"} and metrics["retention"]["1"]["n"] == 8
    assert 0 <= metrics["general"] <= 1 and 0 <= metrics["before"]["general"] <= 1
    adapter_bytes = (store.session_dir(1) / "adapter" / "adapter_model.safetensors").read_bytes()

    # Rollback restores session 1 exactly; the next session is trained on top of it; session 2 stays on disk.
    rollback(store, 1)
    restored, _ = load_chain(store, store.chain(store.info()["active"]), ModelConfig(name=str(tiny_dir)), "merge")
    assert torch.equal(logits(restored, tok), after_1)
    assert (store.session_dir(1) / "adapter" / "adapter_model.safetensors").read_bytes() == adapter_bytes
    third = train_session(store, fast_cfg(tiny_dir), str(HOUSING))
    assert third["id"] == 3 and third["parent"] == 1 and store.chain(3) == [1, 3] and store.ids() == [1, 2, 3]
    with pytest.raises(UserError, match="no session 7"):
        rollback(store, 7)

    # Export: a plain HF directory that answers like the served chain.
    out = export(store, str(tmp_path / "out"))
    exported = AutoModelForCausalLM.from_pretrained(out)
    served, _ = load_chain(store, [1, 3], ModelConfig(name=str(tiny_dir)), "merge")
    assert torch.allclose(logits(exported, tok), logits(served, tok), atol=1e-5)
    assert json.loads((out / "forgetlab.json").read_text())["chain"] == [1, 3]
    with pytest.raises(UserError, match="not empty"):
        export(store, str(out))


def test_rollback_to_a_kept_epoch(tiny_dir, tmp_path, monkeypatch, capsys):
    """The adapters of the keep_epochs epochs before the last are kept with the session; `session rollback --to K
    --epoch E` serves (and trains on top of) session K as it was after epoch E."""
    from safetensors.torch import load_file

    from forgetlab.model import adapter_state
    from forgetlab.sessions.manage import rollback

    seen = {}
    real_save = session_recipe.save_checkpoint

    def remember(part, model, ckpt):  # the adapter's weights at the end of each epoch, as training had them
        seen[ckpt["epoch"]] = {k: v.clone() for k, v in adapter_state(model).items()}
        real_save(part, model, ckpt)

    monkeypatch.setattr(session_recipe, "save_checkpoint", remember)
    store = Store(tmp_path, "msu")
    train_session(store, fast_cfg(tiny_dir, epochs=4, keep_epochs=2), str(CS))
    assert store.kept_epochs(1) == [2, 3] and sorted(seen) == [1, 2, 3, 4]  # epoch 1 pruned, 4 is the session
    kept = load_file(store.adapter_path(1, 2) / "adapter_model.safetensors")
    final = load_file(store.adapter_path(1) / "adapter_model.safetensors")
    assert not all(torch.equal(final[k], v) for k, v in kept.items())
    # the kept epoch-2 file holds exactly the weights training had after epoch 2 (PEFT's names, without "default")
    trained = {k.replace(".s001", ""): v for k, v in seen[2].items()}
    assert set(kept) == set(trained) and all(torch.equal(kept[k], trained[k]) for k in kept)

    tok = load_chain(store, [1], ModelConfig(name=str(tiny_dir)), "merge")[1]
    r = call_main(capsys, "session", "rollback", "--assistant", "msu", "--home", str(tmp_path), "--to", "1", "--epoch", "2")
    assert r.returncode == 0 and "active session 1 (epoch 2)" in " ".join(r.stdout.split())
    assert store.info()["active_epoch"] == 2 and store.links(1, 2) == {1: 2}
    from forgetlab.sessions.manage import loader

    served = loader(store, device="cpu", dtype="float32")().model
    at_2, _ = load_chain(store, {1: 2}, ModelConfig(name=str(tiny_dir)), "merge")
    at_3, _ = load_chain(store, [1], ModelConfig(name=str(tiny_dir)), "merge")
    assert torch.equal(logits(served, tok), logits(at_2, tok)) and not torch.allclose(logits(at_2, tok), logits(at_3, tok))

    second = train_session(store, fast_cfg(tiny_dir, epochs=1, keep_epochs=0), str(HOUSING))
    assert second["parent"] == 1 and second["parent_epoch"] == 2 and store.links(2) == {1: 2, 2: None}
    assert store.kept_epochs(2) == [] and store.info()["active_epoch"] is None
    for epoch, message in ((1, "can return to epochs 2, 3, 4"), (5, "not epoch 5")):
        with pytest.raises(UserError, match=message):
            rollback(store, 1, epoch)
    rollback(store, 1, 4)  # the final epoch is the session's own adapter
    assert store.info()["active"] == 1 and store.info()["active_epoch"] is None


@pytest.mark.parametrize("mode", ["merge", "stack"])
def test_export_adapter_is_one_peft_lora_adapter_that_answers_like_the_chain(tiny_dir, tmp_path, capsys, mode):
    """`session export --adapter`: the chain as one PEFT LoRA adapter (what vLLM's --lora-modules loads: an
    adapter_config.json with r, lora_alpha and target_modules, safetensors weights under PEFT's names) that, applied
    to the `--base` export, answers like the served chain."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    store = Store(tmp_path / "home", "msu")
    train_session(store, fast_cfg(tiny_dir, mode=mode), str(CS))  # rank 8 (auto), q and v
    train_session(store, fast_cfg(tiny_dir, mode=mode, rank=2, targets=("q_proj", "o_proj")), str(HOUSING))
    home = ["--assistant", "msu", "--home", str(tmp_path / "home")]
    r = call_main(capsys, "session", "export", *home, "--adapter", str(tmp_path / "adapter"))
    assert r.returncode == 0 and "--max-lora-rank 16 --lora-modules msu=" in " ".join(r.stdout.split())
    assert call_main(capsys, "session", "export", *home, "--base", str(tmp_path / "base")).returncode == 0
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["target_modules"]) == (10, 10, ["o_proj", "q_proj", "v_proj"])
    assert config["peft_type"] == "LORA" and config["base_model_name_or_path"]
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert all(k.startswith("base_model.model.model.layers.") and k.endswith((".lora_A.weight", ".lora_B.weight"))
               for k in weights)
    assert weights["base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight"].shape[0] == 10
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    combined = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    served, tok = load_chain(store, [1, 2], ModelConfig(name=str(tiny_dir)), mode)
    assert torch.allclose(logits(combined, tok), logits(served, tok), atol=1e-5)
    assert not torch.allclose(logits(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), tok), logits(served, tok),
                              atol=1e-3)


def test_stacked_adapters_answer_like_merged_ones(tiny_dir, tmp_path):
    stack = Store(tmp_path, "stacked")
    train_session(stack, fast_cfg(tiny_dir, mode="stack"), str(CS))
    train_session(stack, fast_cfg(tiny_dir, mode="stack", rank=2), str(HOUSING))  # ranks may differ per session
    model, tok = load_chain(stack, [1, 2], ModelConfig(name=str(tiny_dir)), "stack")
    assert sorted(model.peft_config) == ["s001", "s002"]
    merged, _ = load_chain(stack, [1, 2], ModelConfig(name=str(tiny_dir)), "merge")
    assert torch.allclose(logits(model, tok), logits(merged, tok), atol=1e-5)
    with pytest.raises(UserError, match="uses mode 'stack'"):
        train_session(stack, fast_cfg(tiny_dir, mode="merge"), str(CS))


def test_interrupted_session_resumes_to_the_uninterrupted_result(tiny_dir, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    cfg = fast_cfg(tiny_dir, epochs=3, dropout=0.1, anchor=0.5)
    whole = Store(tmp_path / "a", "msu")
    train_session(whole, cfg, str(CS))
    train_session(whole, cfg, str(HOUSING))

    cut = Store(tmp_path / "b", "msu")
    train_session(cut, cfg, str(CS))
    real_save = session_recipe.save_checkpoint

    def save_then_stop(part, model, ckpt):
        real_save(part, model, ckpt)
        if ckpt["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(session_recipe, "save_checkpoint", save_then_stop)
    with pytest.raises(Exception, match="partial") as info:
        train_session(cut, cfg, str(HOUSING))
    assert "--resume" in info.value.resume_command
    assert cut.info()["active"] == 1 and cut.ids() == [1]  # session 1 intact, session 2 not published
    with pytest.raises(UserError, match="was interrupted"):
        train_session(cut, cfg, str(HOUSING))
    from forgetlab.cli import main  # carrying on with new settings would lose them silently: refused

    assert main(["session", "train", "--assistant", "msu", "--home", str(tmp_path / "b"), "--resume", "--lr", "1"]) == 2
    monkeypatch.setattr(session_recipe, "save_checkpoint", real_save)
    train_session(cut, cfg, None, resume=True)
    assert cut.info()["active"] == 2 and not cut.partial_dir.exists()
    a = load_file(str(whole.session_dir(2) / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(cut.session_dir(2) / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    la = (whole.session_dir(2) / "history.csv").read_text().splitlines()
    lb = (cut.session_dir(2) / "history.csv").read_text().splitlines()
    assert [r.split(",")[2] for r in la] == [r.split(",")[2] for r in lb]  # the same loss at every step


def test_session_commands_through_the_cli(tiny_dir, tmp_path, capsys):
    home = ["--assistant", "msu", "--home", str(tmp_path)]
    fast = ["--epochs", "1", "--set", "max_new_tokens=4", "--set", "lora.targets=[q_proj]"]
    r = run_cli("session", "train", str(CS), *home, "--model", str(tiny_dir), *fast)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "rank / alpha" in r.stdout and "8 / 16" in r.stdout and "session 1 is active" in r.stdout
    r = run_cli("session", "train", str(HOUSING), *home, *fast, "--replay", "0.3")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "30% of each batch" in r.stdout
    r = call_main(capsys, "session", "list", *home)
    assert r.returncode == 0 and "Retention" in r.stdout and "after 2" in r.stdout and "cs_dept.json" in r.stdout
    assert "general" in r.stdout
    r = call_main(capsys, "session", "rollback", *home, "--to", "1")
    assert r.returncode == 0 and "active session 1" in r.stdout
    assert "rolled back" in call_main(capsys, "session", "list", *home).stdout
    r = call_main(capsys, "session", "rollback", *home, "--to", "5")
    assert r.returncode == 2 and "no session 5" in r.stderr
    r = call_main(capsys, "session", "train", str(CS), *home, "--mode", "stack")
    assert r.returncode == 2 and "uses mode 'merge'" in r.stderr
    r = run_cli("session", "export", *home, "--merged", str(tmp_path / "export"))
    assert r.returncode == 0 and (tmp_path / "export" / "model.safetensors").is_file()
    r = run_cli("chat", *home, "--max-tokens", "3", input="Who teaches CS 101?\n/reset\nhello\n/quit\n")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("msu> ") == 2 and "(history cleared)" in r.stdout
    r = call_main(capsys, "chat", "--assistant", "nobody", "--home", str(tmp_path))
    assert r.returncode == 2 and "no assistant 'nobody'" in r.stderr


def test_gradient_checkpointing_trains_the_same_adapter(tiny_dir, tmp_path):
    from safetensors.torch import load_file

    for name, flag in (("plain", False), ("checkpointed", True)):
        train_session(Store(tmp_path / name, "msu"), fast_cfg(tiny_dir, gradient_checkpointing=flag), str(CS))
    a, b = (load_file(str(Store(tmp_path / n, "msu").session_dir(1) / "adapter" / "adapter_model.safetensors"))
            for n in ("plain", "checkpointed"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert any(float(a[k].abs().max()) > 0 for k in a if "lora_B" in k)  # it did train


def test_anchor_keeps_the_model_near_the_base(tiny_dir, tmp_path):
    from forgetlab.batching import collate
    from forgetlab.losses import answer_logits, kl_to_reference
    from forgetlab.model import load_base
    from forgetlab.retain import build_anchors

    base, tok = load_base(ModelConfig(name=str(tiny_dir)))
    anchors = build_anchors(base, tok, 64)

    def drift(store: Store) -> float:
        model, _ = load_chain(store, [1], ModelConfig(name=str(tiny_dir)), "merge")
        with torch.no_grad():
            return sum(float(kl_to_reference(answer_logits(model, collate([a], tok.pad_token_id))[0], ref))
                       for a, ref in zip(anchors.examples, anchors.refs, strict=True)) / 16

    free, anchored = Store(tmp_path / "free", "msu"), Store(tmp_path / "anchored", "msu")
    train_session(free, fast_cfg(tiny_dir, epochs=4, anchor=0.0), str(CS))
    train_session(anchored, fast_cfg(tiny_dir, epochs=4, anchor=20.0), str(CS))
    assert drift(anchored) < 0.5 * drift(free), (drift(anchored), drift(free))
