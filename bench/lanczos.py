"""Hessian-vector products needed for the top 5 eigenvalues within 1%: Lanczos against power iteration with
deflation (PyHessian's method), on the bundled model's LoRA parameters at a briefly trained checkpoint.

Reference eigenvalues: a long Lanczos run (REF iterations). Lanczos cost: the fewest iterations m whose
top 5 are all within 1% of the reference (every shorter run is a prefix of the long one). Power iteration cost:
each eigenvalue is stopped at its first estimate within 1% of the reference (an oracle stop that favours it),
capped at CAP products per eigenvalue; a capped count is a lower bound, so the ratio is too.
"""

from __future__ import annotations

import torch

from common import bundled
from forgetlab.batching import encode
from forgetlab.config import DataConfig, TrainConfig
from forgetlab.data import load_task
from forgetlab.evaluate import task_batches
from forgetlab.landscape import (
    eager_attention,
    lanczos_coefficients,
    make_hvp,
    power_iteration,
    tridiagonal_eigenvalues,
)
from forgetlab.loop import train
from forgetlab.methods import MethodContext, build_method

K, REF, CAP, TOL = 5, 30, 25, 0.01


def main() -> dict:
    model, tok = bundled()
    task = load_task("facts:people", DataConfig(facts={"entities": 4}))
    enc = [encode(tok, ex, 512) for ex in task.train]
    train(model, enc, TrainConfig(epochs=2, lr=2e-3), build_method("naive"), MethodContext(0), tok.pad_token_id, seed=0)
    batches = task_batches(tok, task, 2, 512, 1)
    calls = {"n": 0}
    with eager_attention(model):
        hvp, n = make_hvp(model, batches)

        def counted(v):
            calls["n"] += 1
            return hvp(v)

        alphas, betas = lanczos_coefficients(counted, n, REF, seed=0)
        ref = tridiagonal_eigenvalues(alphas, betas, K)
        lanczos_needed = next(m for m in range(K, len(alphas) + 1)
                              if torch.all((tridiagonal_eigenvalues(alphas[:m], betas, K) - ref).abs() <= TOL * ref.abs()))
        vals, power_needed = power_iteration(hvp, n, K, max_iter=CAP,
                                             stop=lambda i, est: abs(est - float(ref[i])) <= TOL * abs(float(ref[i])))
    capped = any(abs(v - float(r)) > TOL * abs(float(r)) for v, r in zip(vals, ref, strict=False))
    result = {"reference": [round(float(x), 4) for x in ref], "lanczos_hvps": lanczos_needed,
              "power_hvps": power_needed, "power_capped": capped, "ratio": power_needed / lanczos_needed}
    print(f"Hessian top-{K} within {TOL:.0%}: Lanczos {lanczos_needed} HVPs, power iteration with deflation "
          f"{'>=' if capped else ''}{power_needed} HVPs -> {'>=' if capped else ''}{result['ratio']:.2f}x fewer "
          f"(reference eigenvalues {result['reference']})")
    return result


if __name__ == "__main__":
    main()
