"""Loss landscape at a checkpoint: Hessian eigenvalues, weight displacement, the second-order forgetting estimate.

Coordinates are the trainable LoRA parameters θ (see `model.trainable_named`). The Hessian H of a task's loss
is never formed: Lanczos needs only Hessian-vector products, each one double backward pass.

Forgetting of task 1 when θ moves from its checkpoint θ₁ by Δθ:
    F₁ = L₁(θ₁ + Δθ) − L₁(θ₁) ≈ ½ ΔθᵀH₁Δθ ≤ ½ λ_max ||Δθ||²   (gradient term dropped: θ₁ is near a minimum)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager

import torch

from .batching import to_device
from .evaluate import mean_loss
from .losses import nll, unwrap
from .model import flat_diff, load_adapter_state, trainable_named

HVP = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def eager_attention(model):
    """Switch to eager attention for double backward (fused kernels may lack it); restore afterwards."""
    lm = unwrap(model)
    before = lm.config._attn_implementation
    if before != "eager":
        lm.set_attn_implementation("eager")
    try:
        yield
    finally:
        if before != "eager":
            lm.set_attn_implementation(before)


def make_hvp(model, batches: list[dict]) -> tuple[HVP, int]:
    """Return (v ↦ H v, n) for the mean answer-token loss over `batches`; v and Hv are flat, shape (n,).

    Dropout is off (eval mode) so H is the Hessian of a fixed function. Over one batch the gradient and its graph
    are built once and every product differentiates it again (a forward and a backward pass saved per product; the
    parameters must not change while the returned function is in use); over several, each product builds them anew
    (one graph in memory at a time).
    """
    params = [p for _, p in trainable_named(model)]
    n = sum(p.numel() for p in params)
    device = params[0].device

    kept = []  # one batch: its gradient's graph, built by the first product and differentiated again by the rest

    def gradient(b: dict, keep: bool):
        if kept:
            return kept[0]
        grads = torch.autograd.grad(nll(model, to_device(b, device)) / len(batches), params, create_graph=True)
        if keep:
            kept.append(grads)
        return grads

    def hvp(v: torch.Tensor) -> torch.Tensor:
        pieces = list(torch.split(v.to(device, params[0].dtype), [p.numel() for p in params]))
        vs = [piece.view_as(p) for piece, p in zip(pieces, params, strict=False)]
        out = [torch.zeros_like(p) for p in params]
        for b in batches:
            grads = gradient(b, keep=len(batches) == 1)
            dot = sum((g * u).sum() for g, u in zip(grads, vs, strict=False))
            for acc, h in zip(out, torch.autograd.grad(dot, params, retain_graph=bool(kept)), strict=False):
                acc += h.detach()
        return torch.cat([h.reshape(-1) for h in out]).to(v.dtype)

    return hvp, n


def lanczos_coefficients(hvp: HVP, n: int, iterations: int, seed: int = 0, dtype=torch.float32,
                         tol: float | None = None, k: int = 1) -> tuple[list[float], list[float]]:
    """Lanczos with full reorthogonalisation: the tridiagonal matrix's diagonal (alphas) and off-diagonal (betas).

    Uses `min(iterations, n)` operator applications (fewer if the Krylov space is exhausted, or, with `tol`, once
    each of the top-`k` Ritz pairs (θ, y) has a residual ||H y − θ y|| = β_j |last entry of its eigenvector of T|
    below `tol` · |θ|, which bounds |θ − λ| for the nearest eigenvalue λ by the same; the number used is
    len(alphas)). The first m coefficients are those an m-iteration run would give, so one long run yields
    every shorter one.
    """
    m = min(iterations, n)
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(n, generator=gen, dtype=torch.float64)
    V = torch.zeros((m, n), dtype=dtype)
    V[0] = (v / v.norm()).to(dtype)
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(m):
        w = hvp(V[j]).to(torch.float64)
        alpha = float(w @ V[j].double())
        alphas.append(alpha)
        # Reorthogonalise against the whole basis, twice ("twice is enough"), to stay orthogonal in finite precision.
        for _ in range(2):
            w -= V[: j + 1].double().T @ (V[: j + 1].double() @ w)
        beta = float(w.norm())
        if j == m - 1 or beta < 1e-10 * max(1.0, abs(alpha)) or (
                tol is not None and j + 1 >= k and converged(alphas, betas, beta, k, tol)):
            break
        betas.append(beta)
        V[j + 1] = (w / beta).to(dtype)
    return alphas, betas


def converged(alphas: list[float], betas: list[float], beta: float, k: int, tol: float) -> bool:
    """Whether each of the top-k Ritz pairs of the tridiagonal matrix so far has a residual β |s_last| below
    `tol` · |θ| (`beta`: the next off-diagonal coefficient, not yet in `betas`)."""
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    off = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
    if len(off):
        T += torch.diag(off, 1) + torch.diag(off, -1)
    values, vectors = torch.linalg.eigh(T)
    top, last = values[-k:], vectors[-1, -k:]
    return bool((beta * last.abs() <= tol * top.abs().clamp(min=1e-12)).all())


def tridiagonal_eigenvalues(alphas: list[float], betas: list[float], k: int) -> torch.Tensor:
    """Top-k eigenvalues (largest first) of the symmetric tridiagonal matrix, shape (min(k, len(alphas)),)."""
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    off = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
    if len(off):
        T += torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigvalsh(T).flip(0)[:k]


def lanczos(hvp: HVP, n: int, k: int, iterations: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Top-k eigenvalues (largest first, float64) of the symmetric operator `hvp` after `iterations` Lanczos steps."""
    alphas, betas = lanczos_coefficients(hvp, n, iterations, seed, dtype)
    return tridiagonal_eigenvalues(alphas, betas, k)


def power_iteration(hvp: HVP, n: int, k: int, tol: float = 1e-3, max_iter: int = 200, seed: int = 0,
                    stop: Callable[[int, float], bool] | None = None) -> tuple[list[float], int]:
    """Top-k eigenvalues by power iteration with deflation (PyHessian's method), for comparison with Lanczos.

    Each eigenvalue iterates until its relative change is below `tol`, or until `stop(index, estimate)` is true.
    Returns (eigenvalues, number of Hessian-vector products used).
    """
    gen = torch.Generator().manual_seed(seed)
    found: list[tuple[float, torch.Tensor]] = []
    count = 0
    for i in range(k):
        v = torch.randn(n, generator=gen, dtype=torch.float64)
        v /= v.norm()
        estimate = None
        for _ in range(max_iter):
            hv = hvp(v.float()).double()
            count += 1
            for lam, u in found:  # deflate: remove the components of eigenpairs already found
                hv -= lam * (u @ v) * u
            new = float(hv @ v)
            v = hv / hv.norm()
            done = stop(i, new) if stop else estimate is not None and abs(new - estimate) < tol * abs(estimate) + 1e-12
            estimate = new
            if done:
                break
        found.append((estimate, v))
    return [lam for lam, _ in found], count


def top_eigenvalues(model, batches: list[dict], k: int, iterations: int, seed: int = 0,
                    tol: float | None = None) -> tuple[list[float], int]:
    """Top-k Hessian eigenvalues of the loss over `batches` w.r.t. the trainable parameters, and the Lanczos
    iterations (Hessian-vector products) used: `iterations`, or fewer once the top-k converged to `tol`."""
    with eager_attention(model):
        hvp, n = make_hvp(model, batches)
        alphas, betas = lanczos_coefficients(hvp, n, iterations, seed, tol=tol, k=k)
        return [float(x) for x in tridiagonal_eigenvalues(alphas, betas, k)], len(alphas)


def quadratic_form(model, batches: list[dict], direction: torch.Tensor) -> float:
    """½ dᵀ H d at the model's current parameters, for a flat direction d: one Hessian-vector product."""
    with eager_attention(model):
        hvp, _ = make_hvp(model, batches)
        d = direction.to(torch.float32)
        return 0.5 * float(hvp(d).double() @ d.double())


def delta_w_norm(state_a: dict, state_b: dict, scaling: float) -> float:
    """Frobenius norm of the change of the merged weight update ΔW = scaling · B A, summed over adapted layers.

    States are `model.adapter_state` dicts; a layer missing from a state counts as ΔW = 0.
    """
    def update(state: dict, key: str):
        return scaling * state[key.replace(".lora_A.", ".lora_B.")].double() @ state[key].double() if key in state else 0.0

    total = 0.0
    for key in sorted({k for k in (*state_a, *state_b) if ".lora_A." in k}):
        total += float(((update(state_b, key) - update(state_a, key)) ** 2).sum())
    return total ** 0.5


def checkpoint_landscape(model, cfg, batches, states, task_name: str, train_seconds: float) -> dict:
    """Loss, top Hessian eigenvalues and displacement of the checkpoint just reached (`cfg`: a SequentialConfig;
    `states`: adapter states of every stage so far, the last one current)."""
    scaling = cfg.lora.alpha / cfg.lora.rank
    row = {"task": task_name, "loss": mean_loss(model, batches), "train_seconds": train_seconds,
           "dtheta_prev": float(flat_diff(states[-1], states[-2]).norm()),
           "dW_prev": delta_w_norm(states[-2], states[-1], scaling), "eigenvalues": []}
    if cfg.landscape.enabled:
        t0 = time.perf_counter()
        row["eigenvalues"], row["lanczos_iterations"] = top_eigenvalues(
            model, batches, cfg.landscape.top_k, cfg.landscape.iterations, seed=cfg.train.seed, tol=cfg.landscape.tol)
        row["landscape_seconds"] = time.perf_counter() - t0
    return row


def forgetting_estimates(model, cfg, names: list[str], land, states, checkpoints) -> list[dict]:
    """For each earlier stage i (named `names[i]`): the measured increase of its loss since its checkpoint beside
    ½ΔθᵀH_iΔθ and ½λ_max||Δθ||²."""
    if not cfg.landscape.enabled:
        return []
    j = len(states) - 1
    now = states[-1]
    rows = []
    for i in range(j - 1):
        ck = checkpoints[i]
        dtheta = flat_diff(now, states[i + 1])
        load_adapter_state(model, states[i + 1])
        quad = quadratic_form(model, land[i], dtheta)
        load_adapter_state(model, now)
        lam = ck["eigenvalues"][0]
        increase = mean_loss(model, land[i]) - ck["loss"]
        bound = 0.5 * lam * float(dtheta.norm()) ** 2
        rows.append({"task": names[i], "after": names[j - 1], "dtheta": float(dtheta.norm()),
                     "dW": delta_w_norm(states[i + 1], now, cfg.lora.alpha / cfg.lora.rank), "lambda_max": lam,
                     "quadratic": quad, "bound": bound, "loss_increase": increase, "bound_held": increase <= bound})
    return rows
