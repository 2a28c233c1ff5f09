"""The retain term most unlearning methods share: rc · NLL on the next batch of retain facts."""

from __future__ import annotations

from ..losses import nll


def retain_nll(model, ctx, rc: float):
    """rc · scale · NLL(retain batch), the scale the guard's (1 unless retain facts were lost and guard.retain_gain
    is set); 0 when rc is 0 or there are no retain facts."""
    if rc == 0:
        return 0.0
    batch = ctx.retain_batch(next(model.parameters()).device)
    return rc * ctx.retain_scale * nll(model, batch) if batch is not None else 0.0
