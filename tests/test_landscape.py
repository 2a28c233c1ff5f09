"""Lanczos against a dense eigendecomposition; power iteration; displacement norms."""

import pytest
import torch

from forgetlab.batching import encode, fixed_batches
from forgetlab.config import DataConfig, LoraSettings
from forgetlab.data import load_task
from forgetlab.landscape import delta_w_norm, lanczos, make_hvp, power_iteration, quadratic_form
from forgetlab.loop import train
from forgetlab.methods import MethodContext, build_method
from forgetlab.model import adapter_state, attach_lora, flat, trainable_named

from .conftest import tiny_llama


def trained_tiny(tokenizer, dtype, lora: LoraSettings):
    model = attach_lora(tiny_llama(len(tokenizer), dtype=dtype, hidden=16, layers=1), lora)
    model.to(dtype)
    task = load_task("facts:people", DataConfig(facts={"entities": 2}))
    enc = [encode(tokenizer, ex, 128) for ex in task.train]
    from forgetlab.config import TrainConfig

    cfg = TrainConfig(epochs=2, lr=1e-2, batch_size=4)
    train(model, enc, cfg, build_method("naive"), MethodContext(0), tokenizer.pad_token_id, seed=0)
    model.base_model.set_attn_implementation("eager")  # fused CPU attention has no double backward
    return model, fixed_batches(enc[:4], 4, tokenizer.pad_token_id)


def test_lanczos_matches_dense_eigendecomposition(tokenizer):
    lora = LoraSettings(rank=2, alpha=4, dropout=0.0, targets=("q_proj",))
    model, batches = trained_tiny(tokenizer, torch.float64, lora)
    hvp, n = make_hvp(model, batches)
    assert n == 2 * (16 + 16)  # A: (2, 16), B: (16, 2) in one layer
    dense = torch.stack([hvp(torch.eye(n, dtype=torch.float64)[i]) for i in range(n)])
    assert torch.allclose(dense, dense.T, atol=1e-8), "the Hessian must be symmetric"
    exact = torch.linalg.eigvalsh(dense).flip(0)[:5]
    approx = lanczos(hvp, n, 5, iterations=n, dtype=torch.float64)
    assert torch.allclose(approx, exact, rtol=1e-4, atol=1e-10), (approx, exact)
    assert exact[0] > 0


def test_products_differentiating_the_kept_gradient_graph_equal_products_built_afresh(tokenizer):
    lora = LoraSettings(rank=2, alpha=4, dropout=0.0, targets=("q_proj", "v_proj"))
    model, batches = trained_tiny(tokenizer, torch.float64, lora)
    hvp, n = make_hvp(model, batches)  # one batch: the gradient graph is kept after the first product
    vs = [torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    again = [hvp(v) for v in vs]
    fresh = [make_hvp(model, batches)[0](v) for v in vs]
    two = make_hvp(model, batches + batches)[0]  # two batches: rebuilt each product (the mean of the same batch twice)
    for a, f, v in zip(again, fresh, vs, strict=True):
        assert torch.allclose(a, f, rtol=1e-10, atol=1e-12) and torch.allclose(two(v), f, rtol=1e-8, atol=1e-12)
    assert not torch.allclose(again[0], again[1])


def test_power_iteration_and_lanczos_on_a_known_spectrum():
    # A symmetric matrix with a known spectrum: power iteration with deflation finds the top 3, and so does
    # Lanczos, with far fewer products. (On the LoRA Hessian near B = 0 eigenvalues come in ± pairs, where power
    # iteration stalls: one reason forgetlab uses Lanczos.)
    n = 60
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    spectrum = torch.cat([torch.tensor([10.0, 8.0, 6.5], dtype=torch.float64), torch.linspace(5, -1, n - 3)])
    M = q @ torch.diag(spectrum) @ q.T
    vals, count = power_iteration(lambda v: M @ v.double(), n, 3, tol=1e-10, max_iter=2000)
    assert torch.allclose(torch.tensor(vals, dtype=torch.float64), spectrum[:3], rtol=1e-3)
    top = lanczos(lambda v: M @ v.double(), n, 3, iterations=25, dtype=torch.float64)
    assert torch.allclose(top, spectrum[:3], rtol=1e-6)
    assert count > 3 * 25


def test_lanczos_stops_once_the_top_k_has_converged():
    """With a tolerance Lanczos stops once the top-k Ritz pairs' residuals are below it: far fewer Hessian-vector
    products on a well-separated spectrum, and the same eigenvalues to within the tolerance."""
    from forgetlab.landscape import lanczos_coefficients, tridiagonal_eigenvalues

    n = 200
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    spectrum = torch.cat([torch.tensor([50.0, 30.0, 20.0], dtype=torch.float64), torch.linspace(5, -1, n - 3)])
    M = q @ torch.diag(spectrum) @ q.T
    calls = []

    def hvp(v):
        calls.append(1)
        return M @ v.double()

    alphas, betas = lanczos_coefficients(hvp, n, 100, tol=1e-6, k=3, dtype=torch.float64)
    assert len(alphas) == len(calls) < 100  # it stopped early, and says how many products it used
    top = tridiagonal_eigenvalues(alphas, betas, 3)
    assert torch.allclose(top, spectrum[:3], rtol=1e-5)
    full, _ = lanczos_coefficients(lambda v: M @ v.double(), n, 100, dtype=torch.float64)
    assert len(full) == 100 and full[: len(alphas)] == pytest.approx(alphas)  # the same run, cut short


def test_quadratic_form_matches_dense(tokenizer):
    lora = LoraSettings(rank=2, alpha=4, dropout=0.0, targets=("q_proj",))
    model, batches = trained_tiny(tokenizer, torch.float64, lora)
    hvp, n = make_hvp(model, batches)
    d = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dense = torch.stack([hvp(torch.eye(n, dtype=torch.float64)[i]) for i in range(n)])
    q = quadratic_form(model, batches, d)
    assert abs(q - 0.5 * float(d @ dense @ d)) <= 1e-3 * abs(q) + 1e-6


def test_delta_w_norm_equals_merged_update(tokenizer):
    lora = LoraSettings(rank=4, alpha=8, dropout=0.0, targets=("q_proj", "v_proj"))
    model, _ = trained_tiny(tokenizer, torch.float32, lora)
    after = adapter_state(model)
    before = {k: torch.zeros_like(v) if ".lora_B." in k else v for k, v in after.items()}
    # Explicit: PEFT's own delta weight of each LoRA layer, after minus before (B=0 gives zero).
    explicit = sum(float((m.get_delta_weight("default").detach() ** 2).sum())
                   for m in model.modules() if hasattr(m, "get_delta_weight") and hasattr(m, "lora_A"))
    assert abs(delta_w_norm(before, after, lora.alpha / lora.rank) - explicit ** 0.5) < 1e-4 * explicit ** 0.5
    assert delta_w_norm(after, after, 2.0) == 0.0
    assert len(flat(after)) == sum(p.numel() for _, p in trainable_named(model))


def test_the_bound_row_equals_the_dense_hessian_and_bound_held_follows(tokenizer):
    """The forgetting estimate's row on a tiny model: ½λ_max||Δθ||² and ½ΔθᵀHΔθ as the report computes them
    (Lanczos at the task's checkpoint, one Hessian-vector product) equal the values from the dense Hessian of that
    task's loss at its checkpoint, and `bound_held` is the measured loss increase against that bound."""
    from forgetlab.config import SequentialConfig
    from forgetlab.evaluate import mean_loss
    from forgetlab.landscape import checkpoint_landscape, forgetting_estimates
    from forgetlab.model import flat_diff, load_adapter_state

    lora = LoraSettings(rank=2, alpha=4, dropout=0.0, targets=("v_proj",))
    model, land_a = trained_tiny(tokenizer, torch.float64, lora)  # the checkpoint after task A
    _, n = make_hvp(model, land_a)  # Lanczos run to n iterations: exact up to rounding
    cfg = SequentialConfig(lora=lora, landscape={"enabled": True, "top_k": 2, "iterations": n, "tol": None})
    after_a = adapter_state(model)
    ck_a = checkpoint_landscape(model, cfg, land_a, [after_a, after_a], "A", 0.0)
    task_b = load_task("facts:elements", DataConfig(facts={"entities": 2}))
    enc_b = [encode(tokenizer, ex, 128) for ex in task_b.train]
    from forgetlab.config import TrainConfig

    train(model, enc_b, TrainConfig(epochs=3, lr=5e-2, batch_size=4), build_method("naive"), MethodContext(1),
          tokenizer.pad_token_id, seed=1)
    after_b = adapter_state(model)
    land_b = fixed_batches(enc_b[:4], 4, tokenizer.pad_token_id)
    [row] = forgetting_estimates(model, cfg, ["A", "B"], [land_a, land_b], [after_a, after_a, after_b], [ck_a])

    load_adapter_state(model, after_a)
    hvp, _ = make_hvp(model, land_a)
    dense = torch.stack([hvp(torch.eye(n, dtype=torch.float64)[i]) for i in range(n)])
    loss_a = mean_loss(model, land_a)
    load_adapter_state(model, after_b)
    d = flat_diff(after_b, after_a).double()
    lam = float(torch.linalg.eigvalsh(dense).max())
    assert row["lambda_max"] == pytest.approx(lam, rel=1e-4)
    assert row["dtheta"] == pytest.approx(float(d.norm()), rel=1e-6) and float(d.norm()) > 0
    assert row["bound"] == pytest.approx(0.5 * lam * float(d @ d), rel=1e-4)
    assert row["quadratic"] == pytest.approx(0.5 * float(d @ dense @ d), rel=1e-3)
    increase = mean_loss(model, land_a) - loss_a
    assert row["loss_increase"] == pytest.approx(increase, rel=1e-6, abs=1e-9) and abs(increase) > 1e-3
    assert row["bound_held"] is (increase <= 0.5 * lam * float(d @ d))
