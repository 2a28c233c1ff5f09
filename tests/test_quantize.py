"""Round-to-nearest quantization (quantize.py) on numbers checked by hand."""

from __future__ import annotations

import pytest
import torch

from forgetlab.quantize import quantize_model, quantize_tensor


def test_a_group_rounds_to_its_own_grid_by_hand():
    w = torch.tensor([[-1.0, -0.1, 0.23, 0.5]])
    # 4 bits: (0.5 − (−1.0)) / 15 = 0.1 a step, levels −1.0 + 0.1 k: 0.23 → 0.2, the ends stay
    assert quantize_tensor(w, 4, group_size=4).tolist()[0] == pytest.approx([-1.0, -0.1, 0.2, 0.5], abs=1e-6)
    # 2 bits: 3 steps of 0.5: levels −1.0, −0.5, 0.0, 0.5 → −0.1 → 0.0, 0.23 → 0.0
    assert quantize_tensor(w, 2, group_size=4).tolist()[0] == pytest.approx([-1.0, 0.0, 0.0, 0.5], abs=1e-6)
    # groups of 2: each pair is its own range; at 8 bits no weight moves more than half a step (0.9 / 255 / 2)
    two = quantize_tensor(w, 8, group_size=2)
    assert (two - w).abs().max() <= (0.9 / 255) / 2 + 1e-6


def test_uneven_groups_and_error_bounds():
    torch.manual_seed(0)
    w = torch.randn(6, 10)
    for bits in (8, 4):
        q = quantize_tensor(w, bits, group_size=4)  # groups 4, 4, 2
        assert q.shape == w.shape and q.dtype == w.dtype
        for start, end in ((0, 4), (4, 8), (8, 10)):
            g = w[:, start:end]
            step = (g.amax(1) - g.amin(1)) / (2 ** bits - 1)
            assert ((q[:, start:end] - g).abs().amax(1) <= step / 2 + 1e-6).all()
        assert torch.unique(q[0, :4]).numel() <= 4  # at most one value per weight, all on the group's grid
    assert (quantize_tensor(w, 8) - w).abs().max() < (quantize_tensor(w, 4) - w).abs().max()
    with pytest.raises(ValueError):
        quantize_tensor(w, 1)


def test_the_model_rounds_its_linear_layers_not_embeddings(tiny):
    emb = tiny.get_input_embeddings().weight.clone()
    q_proj = tiny.model.layers[0].self_attn.q_proj.weight.clone()
    n = quantize_model(tiny, 4, group_size=8)
    assert n == 7 * len(tiny.model.layers)  # seven projections a layer; the tied head is the embedding
    assert torch.equal(tiny.get_input_embeddings().weight, emb)
    after = tiny.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(after, q_proj) and torch.equal(after, quantize_tensor(q_proj, 4, 8))


def test_quantized_rounds_for_the_block_and_puts_the_weights_back(tiny):
    from forgetlab.quantize import linear_layers, quantized

    before = [m.weight.clone() for m in linear_layers(tiny)]
    with quantized(tiny, 4, 8):
        assert all(torch.equal(m.weight, quantize_tensor(w, 4, 8)) for m, w in zip(linear_layers(tiny), before,
                                                                                    strict=True))
    assert all(torch.equal(m.weight, w) for m, w in zip(linear_layers(tiny), before, strict=True))


def test_unlearn_attacks_quant_measures_both_models_at_each_precision(tiny_dir, tmp_path, capsys):
    import json

    from tests.conftest import call_main

    r = call_main(capsys, "unlearn", "--model", str(tiny_dir), "--out", str(tmp_path), "--save", "merged",
                  "--lora-rank", "4", "--epochs", "1", "--attacks", "quant", "--set", "general.enabled=false",
                  "--set", "guard.enabled=false", "--set", "train.batch_size=16", "--set", "quant.group_size=16")
    assert r.returncode == 0, r.stderr
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    q = json.loads((run / "metrics.json").read_text())["quant"]
    assert [(x["model"], x["bits"]) for x in q["rows"]] == [(m, b) for m in ("original", "unlearned")
                                                            for b in ("full", 8, 4)]
    full = {x["model"]: x for x in q["rows"] if x["bits"] == "full"}
    state = json.loads((run / "metrics.json").read_text())
    assert full["unlearned"]["forget_acc"] == pytest.approx(state["final"]["forget_ll"])  # the saved model
    gone = full["original"]["forget_acc"] - full["unlearned"]["forget_acc"]
    for x in q["rows"]:
        assert 0 <= x["forget_acc"] <= 1 and 0 <= x["forget_qa"] <= 1
        if x["model"] == "unlearned" and x["bits"] != "full":
            expected = (x["forget_acc"] - full["unlearned"]["forget_acc"]) / gone if gone > 1e-9 else None
            assert x["comes_back"] == (pytest.approx(expected) if expected is not None else None)
    assert "Quantization attack" in " ".join(r.stdout.split()) and (run / "quant.png").is_file()


def test_an_unknown_attack_is_one_line(capsys):
    from tests.conftest import call_main

    r = call_main(capsys, "unlearn", "--attacks", "rtt,relearnx")
    assert r.returncode == 2 and "unknown attack relearnx; valid: rtt, relearn, quant" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
