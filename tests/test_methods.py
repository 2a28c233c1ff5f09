"""Every registered strategy through the real recipe on the tiny model (one row each), and what each hook claims."""

import io
import json
import math

import pytest
import torch
from rich.console import Console

from forgetlab.batching import collate, encode
from forgetlab.config import SequentialConfig, StrategyConfig, build_config
from forgetlab.data import load_task
from forgetlab.losses import nll, orthogonality_penalty
from forgetlab.methods import STRATEGIES, MethodContext, build_method
from forgetlab.methods.gated import coefficients
from forgetlab.model import adapter_state, attach_lora, lora_layers, lora_state
from forgetlab.recipes.sequential import run_sequential

from .conftest import FEW_FACTS, TINY_LORA, tiny_llama

STAGES = {"sequential": 3, "joint": 2, "none": 1}  # rows of the accuracy matrix for two tasks


def tiny_config(tiny_dir, root, method: str, **sets) -> SequentialConfig:
    """Two facts tasks on the tiny model; `sets` are dotted overrides."""
    base = {"tasks": ["facts:people", "facts:elements"], "model": {"name": str(tiny_dir)},
            "lora": {"rank": 4, "alpha": 8, "dropout": 0.0, "targets": ["q_proj", "v_proj"]},
            "strategy": {"name": method}, "train": {"epochs": 2, "lr": 1e-2, "batch_size": 4},
            "data": {"facts": {"entities": 2}}, "landscape": {"enabled": False},
            "general": {"max_new_tokens": 3}, "run": {"root": str(root)}}
    return build_config(SequentialConfig, base, sets)


def quiet():
    return Console(file=io.StringIO(), width=200)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_runs_the_recipe(tiny_dir, tmp_path, name):
    run = run_sequential(tiny_config(tiny_dir, tmp_path, name), console=quiet())
    m = json.loads((run / "metrics.json").read_text())
    method = STRATEGIES[name]
    assert m["status"] == "complete" and len(m["accuracy"]) == STAGES[method.stages]
    assert len(m["diagnostics"]["general_accuracy"]) == STAGES[method.stages]
    assert all(math.isfinite(h["loss"]) for h in m["history"])
    assert (run / "report.html").is_file() and (run / "retention.csv").is_file()
    if method.stages == "none":
        assert m["history"] == [] and not (run / "adapters").exists()
    else:
        assert m["history"] and m["checkpoints"][-1]["dtheta_prev"] > 0, "training must move the adapter"
        assert m["metrics"]["seen"]["average_accuracy"] >= 0
    if method.stages == "sequential":
        assert len(m["diagnostics"]["spikes"]) == 1 and m["diagnostics"]["spikes"][0]["factor"] > 0
    if name == "gated":
        info = m["method_info"][1]
        assert (run / "gates.png").is_file() and set(info["gates_by_task"]) == {"facts:people", "facts:elements"}
        assert "Gates: the new adapter" in (run / "report.html").read_text(), "the gate table is in the report"
        assert all(len(v) == 4 for v in info["gates_by_task"].values()), "one mean per adapted layer (2 layers × q, v)"
        assert abs(info["gates"]["facts:elements"] - 0.02) > 1e-3, "the gate network trains away from its start (0.02)"


@pytest.mark.parametrize("name", ["replay", "kl", "ewc", "olora", "merge", "gated"])
def test_resume_rebuilds_the_strategy_exactly(tiny_dir, tmp_path, name):
    """Cut a finished run back to 'task 1 done' and resume: the same losses and accuracies as uninterrupted."""
    import shutil

    sets = {"general.enabled": False, "train.epochs": 1}
    full = run_sequential(tiny_config(tiny_dir, tmp_path / "a", name, **sets), console=quiet())
    cut = tmp_path / "b" / full.name
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "adapters" / "facts-elements")
    m = json.loads((cut / "metrics.json").read_text())
    n1 = sum(h["task"] == "facts:people" for h in m["history"])
    for key in ("stages", "accuracy", "retention", "predictions"):
        m[key] = m[key][:2]
    m.update(status="interrupted", history=m["history"][:n1], checkpoints=m["checkpoints"][:1],
             method_info=m["method_info"][:1])
    (cut / "metrics.json").write_text(json.dumps(m))
    cfg = tiny_config(tiny_dir, tmp_path / "b", name, **sets)
    run_sequential(cfg, resume=cut, console=quiet())
    resumed, original = (json.loads((p / "metrics.json").read_text()) for p in (cut, full))
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in original["history"]], rel=1e-5)
    assert resumed["accuracy"] == original["accuracy"] and resumed["predictions"] == original["predictions"]


def ctx_for(tokenizer, i, tasks, **sets):
    cfg = build_config(SequentialConfig, {"strategy": sets} if sets else {})
    return MethodContext(task_index=i, tasks=tasks[: i + 1], tokenizer=tokenizer, train=cfg.train)


@pytest.fixture
def two_tasks():
    return [load_task(s, FEW_FACTS) for s in ("facts:people", "facts:elements")]


def batch_of(tokenizer, task, n=4):
    return collate([encode(tokenizer, ex, 128) for ex in task.train[:n]], tokenizer.pad_token_id)


@torch.no_grad()
def logits(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def randomize_b(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n and p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_quadratically(tokenizer, two_tasks):
    model = attach_lora(tiny_llama(len(tokenizer)), TINY_LORA)
    randomize_b(model)
    ewc = build_method("ewc")
    ewc.after_task(model, two_tasks[0], ctx_for(tokenizer, 0, two_tasks))
    assert float(ewc.penalty(model)) == 0.0
    assert sum(float(f.sum()) for f in ewc.fisher.values()) > 0
    anchor = adapter_state(model)
    direction = {n: torch.randn_like(v) for n, v in anchor.items()}
    penalties = []
    for t in (0.5, 1.0, 2.0):
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in anchor:
                    p.copy_(anchor[n] + t * direction[n])
        penalties.append(float(ewc.penalty(model)))
    assert 0 < penalties[0] < penalties[1] < penalties[2]
    assert penalties[2] == pytest.approx(4 * penalties[1], rel=1e-4) and penalties[1] == pytest.approx(4 * penalties[0], rel=1e-4)


def test_olora_keeps_earlier_adapters_bit_for_bit(tiny_dir, tmp_path):
    from transformers import AutoTokenizer

    from forgetlab.config import TrainConfig
    from forgetlab.loop import train

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    tasks = [load_task(s, FEW_FACTS) for s in ("facts:people", "facts:elements")]
    model = attach_lora(tiny_llama(len(tokenizer)), TINY_LORA)
    olora = build_method("olora", StrategyConfig(olora={"lam": 1.0}))
    for i, task in enumerate(tasks):
        ctx = ctx_for(tokenizer, i, tasks)
        olora.before_task(model, task, ctx)
        if i == 1:
            frozen = {n: v for n, v in lora_state(model).items() if ".default." in n}
            assert frozen and not any(p.requires_grad for n, p in model.named_parameters() if ".default." in n)
            assert olora.penalty(model) > 0
        enc = [encode(tokenizer, ex, 128) for ex in task.train]
        train(model, enc, TrainConfig(epochs=2, lr=1e-2, batch_size=4), olora, ctx, tokenizer.pad_token_id, seed=i)
    after = lora_state(model)
    assert all(torch.equal(after[n], v) for n, v in frozen.items())
    assert any(".facts_elements." in n for n in after)


def test_orthogonality_penalty_against_hand_computed_values():
    a = torch.tensor([[1.0, 0.0, 0.0]])
    assert float(orthogonality_penalty([(torch.tensor([[0.0, 2.0, 0.0]]), a)])) == 0.0
    # rows (3, 1, 0), (−1, 0, 2) against (1, 0, 0), (0, 1, 1): inner products 3, 1, −1, 2 → |·| sums to 7; a second
    # pair adds |−2| = 2.
    new = torch.tensor([[3.0, 1.0, 0.0], [-1.0, 0.0, 2.0]])
    old = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    assert float(orthogonality_penalty([(new, old)])) == pytest.approx(7.0)
    assert float(orthogonality_penalty([(new, old), (torch.tensor([[0.0, -2.0, 0.0]]), old[1:])])) == pytest.approx(9.0)


def test_olora_loss_is_the_nll_plus_both_penalties_by_hand(tokenizer, two_tasks):
    model = attach_lora(tiny_llama(len(tokenizer)), TINY_LORA)
    olora = build_method("olora", StrategyConfig(olora={"lam": 0.5, "l2": 0.1}))
    olora.before_task(model, two_tasks[0], ctx_for(tokenizer, 0, two_tasks))
    olora.before_task(model, two_tasks[1], ctx_for(tokenizer, 1, two_tasks))
    randomize_b(model)
    ortho, size = 0.0, 0.0
    for layer in lora_layers(model):
        new, old = layer.lora_A["facts_elements"].weight.tolist(), layer.lora_A["default"].weight.tolist()
        ortho += sum(abs(sum(x * y for x, y in zip(rn, ro, strict=True))) for rn in new for ro in old)
        for part in (layer.lora_A, layer.lora_B):
            size += sum(v * v for row in part["facts_elements"].weight.tolist() for v in row) ** 0.5
    assert ortho > 0 and size > 0
    batch = batch_of(tokenizer, two_tasks[1])
    ctx = ctx_for(tokenizer, 1, two_tasks)
    model.eval()
    assert float(olora.penalty(model)) == pytest.approx(ortho, rel=1e-5)
    assert float(olora.loss(model, batch, ctx)) == pytest.approx(float(nll(model, batch)) + 0.5 * ortho + 0.1 * size,
                                                                 rel=1e-5)
    olora.loss(model, batch, ctx).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all(".facts_elements." in n for n in grads), "only the new adapter is trained"


def test_merge_keeps_outputs_and_starts_a_fresh_adapter(tokenizer, two_tasks):
    model = attach_lora(tiny_llama(len(tokenizer)), TINY_LORA)
    randomize_b(model)
    batch = batch_of(tokenizer, two_tasks[0])
    before = logits(model, batch)
    build_method("merge").before_task(model, two_tasks[1], ctx_for(tokenizer, 1, two_tasks))
    after = logits(model, batch)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert all(float(p.abs().max()) == 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_replay_batches_hold_the_configured_share(tokenizer, two_tasks):
    replay = build_method("replay", StrategyConfig(replay={"ratio": 0.5, "buffer": 8}))
    model = None
    replay.before_task(model, two_tasks[0], ctx_for(tokenizer, 0, two_tasks))
    batch = batch_of(tokenizer, two_tasks[1], 4)
    assert replay.mixed(batch, ctx_for(tokenizer, 0, two_tasks)) is batch  # nothing to replay yet
    replay.after_task(model, two_tasks[0], ctx_for(tokenizer, 0, two_tasks))
    replay.before_task(model, two_tasks[1], ctx_for(tokenizer, 1, two_tasks))
    old = {tuple(e.input_ids) for e in replay.old}
    assert len(replay.old) == 8
    mixed = replay.mixed(batch, ctx_for(tokenizer, 1, two_tasks))
    rows = [tuple(ids[m.bool()].tolist()) for ids, m in zip(mixed["input_ids"], mixed["attention_mask"], strict=True)]
    assert len(rows) == 8 and sum(r in old for r in rows) == 4  # 4 new + 4 old = half old


def test_replay_schedule_accepts_old_new_pairs():
    cfg = StrategyConfig(replay={"schedule": ["0/100", "70/30", 0.5]})
    assert cfg.replay.schedule == (0.0, 0.7, 0.5)
    replay = build_method("replay", cfg)
    assert [replay.share_for(i) for i in range(4)] == [0.0, 0.7, 0.5, 0.5]


@pytest.mark.parametrize("reference", ["base", "previous"])
def test_kl_is_zero_at_the_reference_and_positive_away_from_it(tokenizer, two_tasks, reference):
    model = attach_lora(tiny_llama(len(tokenizer)), TINY_LORA)
    if reference == "previous":
        randomize_b(model)  # the previous task's model differs from the base
    kl = build_method("kl", StrategyConfig(kl={"reference": reference, "on": "both", "lam": 1.0}))
    ctx = ctx_for(tokenizer, 0, two_tasks)
    kl.before_task(model, two_tasks[0], ctx)
    batch = batch_of(tokenizer, two_tasks[0])
    model.eval()
    assert float(kl.loss(model, batch, ctx)) == pytest.approx(float(nll(model, batch)), abs=1e-5)
    randomize_b(model, seed=7)
    assert float(kl.loss(model, batch, ctx)) > float(nll(model, batch)) + 1e-4


def test_kl_base_anchors_to_the_base_model_whatever_was_learned_before(tokenizer, two_tasks):
    """`kl-base` after a first task: the anchor KL is measured against the base model (adapters off), so it is
    positive for the trained adapter and zero once the adapter is zeroed; the batch's own answers are not held."""
    model = attach_lora(tiny_llama(len(tokenizer)), TINY_LORA)
    method = build_method("kl-base", StrategyConfig(kl={"reference": "previous", "on": "both", "lam": 1.0}))
    assert (method.cfg.reference, method.cfg.on, method.cfg.lam) == ("base", "anchors", 1.0)
    randomize_b(model)  # what task 1 taught
    ctx = ctx_for(tokenizer, 1, two_tasks)
    method.before_task(model, two_tasks[1], ctx)
    batch = batch_of(tokenizer, two_tasks[1])
    model.eval()
    assert float(method.loss(model, batch, ctx)) > float(nll(model, batch)) + 1e-4
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.zero_()
    method.number = 0
    assert float(method.loss(model, batch, ctx)) == pytest.approx(float(nll(model, batch)), abs=1e-5)


def gated_pair(tokenizer, two_tasks, **settings):
    """A tiny model with a random first adapter and `gated` set up for the first task (the second is added by the test)."""
    model = attach_lora(tiny_llama(len(tokenizer)), TINY_LORA)
    randomize_b(model)
    gated = build_method("gated", StrategyConfig(gated={"init": 0.02, "speed": 100, **settings}))
    gated.before_task(model, two_tasks[0], ctx_for(tokenizer, 0, two_tasks))
    return model, gated


def test_gated_new_gate_starts_near_zero_and_a_shut_gate_is_the_old_model(tokenizer, two_tasks):
    model, gated = gated_pair(tokenizer, two_tasks)
    batch = batch_of(tokenizer, two_tasks[0])
    before = logits(model, batch)
    gated.before_task(model, two_tasks[1], ctx_for(tokenizer, 1, two_tasks))
    layers = lora_layers(model)
    enc = [encode(tokenizer, ex, 128) for ex in two_tasks[0].train[:4]]
    assert gated.gate_means(model, enc, tokenizer.pad_token_id) == pytest.approx([0.02] * len(layers))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("facts_elements" in n for n in trainable)
    assert any("forgetlab_gates" in n for n in trainable), "the new gate network trains"
    randomize_b(model, seed=3)  # the new adapter is non-zero now; with its gate shut it must not matter
    with torch.no_grad():
        for layer in layers:
            layer.forgetlab_gates["facts_elements"].b.fill_(-1.0)  # logit −100
    torch.testing.assert_close(logits(model, batch), before, rtol=1e-5, atol=1e-5)
    with model.disable_adapter():  # adapters off: the base model, gates or not
        base = logits(model, batch)
    plain = tiny_llama(len(tokenizer))
    torch.testing.assert_close(base, logits(plain, batch), rtol=1e-5, atol=1e-5)


def test_gate_routes_each_input_to_the_old_model_or_the_new_adapter(tokenizer, two_tasks):
    """A gate that reads its input: open (g = 1) for inputs with a feature above a threshold, shut (g = 0) below.
    Each row of a batch must then give exactly the new adapter's model or exactly the old model."""
    model, gated = gated_pair(tokenizer, two_tasks)
    batch = batch_of(tokenizer, two_tasks[0], n=6)
    old = logits(model, batch)
    gated.before_task(model, two_tasks[1], ctx_for(tokenizer, 1, two_tasks))
    randomize_b(model, seed=3)
    # The new adapter alone on the base model (what an open gate must give): a model with only that adapter.
    alone = attach_lora(tiny_llama(len(tokenizer)), TINY_LORA)
    new_state = {n.replace(".facts_elements.", ".default."): p for n, p in model.named_parameters()
                 if ".facts_elements." in n and "lora_" in n}
    with torch.no_grad():
        for n, p in alone.named_parameters():
            if "lora_" in n:
                p.copy_(new_state[n])
    new = logits(alone, batch)
    # Gates fixed per row: fully open for the even rows of the batch, fully shut for the odd ones, in every layer.
    open_rows = torch.tensor([r % 2 == 0 for r in range(batch["input_ids"].shape[0])])
    for layer in lora_layers(model):
        net = layer.forgetlab_gates["facts_elements"]
        net.forward = lambda x, d: open_rows.to(x.dtype)[:, None, None].expand(*x.shape[:-1], 1)
    mixed = logits(model, batch)
    torch.testing.assert_close(mixed[open_rows], new[open_rows], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mixed[~open_rows], old[~open_rows], rtol=1e-5, atol=1e-5)


def test_the_gate_network_reads_each_token_of_the_input_and_the_adapter_output():
    from forgetlab.methods.gated import GateNet

    net = GateNet(3, 2, init=0.1, speed=10.0)
    x, d = torch.tensor([[[3.0, 0.0, 4.0], [0.0, -2.0, 0.0]]]), torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert net(x, d).shape == (1, 2, 1) and torch.allclose(net(x, d), torch.tensor(0.1))
    with torch.no_grad():
        net.u.copy_(torch.tensor([1.0, 2.0, 0.0]))
        net.w.copy_(torch.tensor([0.0, 5.0]))

    def by_hand(xt, dt):  # rms-normalise each, read, then sigmoid(speed · (b + read / √(3 + 2)))
        xn = [v / (sum(e * e for e in xt) / 3) ** 0.5 for v in xt]
        dn = [v / ((sum(e * e for e in dt) / 2) ** 0.5 + 1e-12) for v in dt] if any(dt) else [0.0, 0.0]
        read = xn[0] * 1 + xn[1] * 2 + dn[1] * 5
        return 1 / (1 + math.exp(-10 * (math.log(0.1 / 0.9) / 10 + read / math.sqrt(5))))

    got = net(x, d)[0, :, 0]
    assert float(got[0]) == pytest.approx(by_hand([3.0, 0.0, 4.0], [1.0, 1.0]), rel=1e-5)
    assert float(got[1]) == pytest.approx(by_hand([0.0, -2.0, 0.0], [0.0, 0.0]), rel=1e-5)
    assert float(got[0]) > 0.5 > float(got[1]), "the two tokens route differently"


def test_gate_coefficients():
    g2, g3 = torch.tensor(0.5), torch.tensor(0.75)
    c1, c2, c3 = coefficients([g2, g3])
    assert float(c3) == pytest.approx(0.75)
    assert float(c2) == pytest.approx(0.5 * 0.25)
    assert float(c1) == pytest.approx(0.5 * 0.25)
    assert [float(c) for c in coefficients([])] == [1.0]


def test_unknown_strategy_lists_the_valid_ones():
    from forgetlab.errors import UserError

    with pytest.raises(UserError, match="valid strategies: naive, replay, kl, kl-base, ewc, olora, merge, gated, joint, base"):
        build_method("magic")


def test_gated_follows_a_schedule_instead_of_its_fixed_mix(tokenizer, two_tasks):
    model, gated = gated_pair(tokenizer, two_tasks, schedule=["0/100", "30/70"], mix=0.5)
    assert gated.curriculum.share == 0.0  # task 1: the schedule's first entry, not mix
    batch = batch_of(tokenizer, two_tasks[1], 4)
    gated.after_task(model, two_tasks[0], ctx_for(tokenizer, 0, two_tasks))
    gated.before_task(model, two_tasks[1], ctx_for(tokenizer, 1, two_tasks))
    assert gated.curriculum.share == pytest.approx(0.3)
    mixed = gated.curriculum.mixed(batch, ctx_for(tokenizer, 1, two_tasks))
    assert mixed["input_ids"].shape[0] == 4 + 2  # old_count(4, 0.3): 2 old rows with 4 new (2/6 ≈ 0.3)
    plain = build_method("gated", StrategyConfig(gated={"mix": 0.5}))
    plain.before_task(model, two_tasks[0], ctx_for(tokenizer, 0, two_tasks))
    assert plain.curriculum.share == 0.5  # without a schedule: the fixed mix


def test_a_four_stage_curriculum_revisits_a_task_and_is_measured_after_every_stage(tiny_dir, tmp_path):
    from forgetlab.recipes.sequential import mixed_stage

    stages = [{"facts:people": 1}, {"facts:people": "70%", "facts:elements": "30%"},
              {"facts:people": 0.5, "facts:elements": 0.5}, {"facts:people": 30, "facts:elements": 70}]
    cfg = tiny_config(tiny_dir, tmp_path, "naive", stages=stages)
    assert cfg.stages[1] == {"facts:people": 0.7, "facts:elements": 0.3} and cfg.stages[3]["facts:elements"] == 0.7
    tasks = {t: load_task(t, cfg.data) for t in cfg.tasks}
    stage = mixed_stage(1, cfg.stages[1], tasks, seed=0)
    size = max(len(t.train) for t in tasks.values())
    people = [ex for ex in tasks["facts:people"].train]
    assert stage.name == "stage2 people70+elements30" and len(stage.train) == round(0.7 * size) + round(0.3 * size)
    assert sum(ex in people for ex in stage.train) == round(0.7 * size)
    assert mixed_stage(1, cfg.stages[1], tasks, seed=0).train == stage.train  # seeded

    run = run_sequential(cfg, console=quiet())
    m = json.loads((run / "metrics.json").read_text())
    assert m["plan"] == "curriculum" and len(m["accuracy"]) == 5 and m["stages"][2] == "after stage2 people70+elements30"
    assert len(m["curriculum"]) == 4 and {h["task"] for h in m["history"]} == {s.removeprefix("after ")
                                                                           for s in m["stages"][1:]}
    assert len(m["metrics"]["seen"]["forgetting"]) == 2 and m["metrics"]["seen"]["bwt"] is None  # no one task per stage
    people_acc = [row["facts:people"]["seen"]["accuracy"] for row in m["accuracy"]]
    assert m["diagnostics"]["task1_retention"][1:] == pytest.approx([a / people_acc[1] for a in people_acc[1:]])
    assert "Curriculum: each stage" in (run / "report.html").read_text()
    for bad, message in (([{"facts:people": 0.5}], "add up to 1"), ([{"facts:nope": 1}], "not in tasks")):
        with pytest.raises(Exception, match=message):
            tiny_config(tiny_dir, tmp_path, "naive", stages=bad)
