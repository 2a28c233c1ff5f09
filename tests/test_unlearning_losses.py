"""The unlearning objectives' maths (NPO, SimNPO, the sequence log-likelihood they compare, RMU's distances)
against hand-computed values; the methods that use them come with the `unlearn` command."""

from __future__ import annotations

import torch


def test_unlearning_losses_by_hand(tiny, tokenizer):
    import math

    from forgetlab.batching import collate, encode
    from forgetlab.data.records import Example, user
    from forgetlab.losses import answer_logprobs, masked_mse, nll, npo_loss, simnpo_loss

    # NPO at the reference is (2/β)·log 2 whatever the likelihood; below the reference it falls
    logp = torch.tensor([-3.0, -7.5])
    assert math.isclose(float(npo_loss(logp, logp, 0.1)), 20 * math.log(2), rel_tol=1e-6)
    assert float(npo_loss(logp - 5, logp, 0.1)) < 20 * math.log(2)
    # SimNPO by hand: −(2/β)·log σ(−(β/|y|)·log π − γ)
    got = float(simnpo_loss(torch.tensor([-6.0]), torch.tensor([3]), beta=2.0, gamma=0.5))
    assert math.isclose(got, -(2 / 2.0) * math.log(1 / (1 + math.exp(-(-(2.0 / 3) * -6.0 - 0.5)))), rel_tol=1e-6)
    # the sequence log-likelihood sums what the token NLL averages (two rows of different lengths, padded)
    rows = [encode(tokenizer, Example(user("Hi"), "Hello there."), 64), encode(tokenizer, Example(user("Q?"), "A."), 64)]
    batch = collate(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        lp, n = answer_logprobs(tiny, batch)
        one = [float(nll(tiny, collate([r], tokenizer.pad_token_id))) for r in rows]
    assert n.tolist() == [sum(1 for x in r.labels[1:] if x != -100) for r in rows]
    assert all(math.isclose(-float(lp[i]) / int(n[i]), one[i], rel_tol=1e-4) for i in range(2))
    # masked MSE: zero at the control vector on real tokens, padding ignored
    h = torch.randn(2, 3, 4)
    c = torch.full((4,), 6.5)
    h[0, :2] = c
    h[1, :1] = c
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert float(masked_mse(h, c, mask)) == 0.0 and float(masked_mse(h, h + 2, mask)) == 4.0
