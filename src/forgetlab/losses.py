"""Shared loss maths used by the loop, the methods and the landscape code."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batching import IGNORE, Encoded, collate, pack, to_device


def unwrap(model):
    """The underlying causal LM (LoRA layers stay injected, so adapters still apply)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def answer_logits(model, batch: dict[str, torch.Tensor], below=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets at answer tokens only: ((n_answer_tokens, vocab), (n_answer_tokens,)).

    The output projection runs only where a label exists, not over the whole sequence: on a 49k-token
    vocabulary this saves a large share of the compute of a padded prompt-heavy batch. `below` (a `below.Below`
    of this model with a nonzero `start`): the layers under the trained ones are not run again, their states kept.
    """
    lm = unwrap(model)
    if "position_ids" in batch:  # packed (`batching.pack`): the restarts of the positions separate the rows
        rows = {"position_ids": batch["position_ids"], "use_cache": False}
    else:
        rows = {"attention_mask": batch["attention_mask"]}
    if below is not None and below.start:
        hidden = below.hidden(batch, **rows)
    else:
        hidden = lm.get_decoder()(input_ids=batch["input_ids"], **rows).last_hidden_state
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    logits = lm.get_output_embeddings()(hidden[:, :-1][keep])
    return logits, labels[keep]


_PACKS: dict[tuple, bool] = {}


def packs(model, pad_id: int) -> bool:
    """Does `model` read a packed batch (`batching.pack`) as separate rows? Checked once per model class: the
    answer logits of two rows packed must equal those of the rows padded (a model that ignores position restarts
    would let the second row attend to the first)."""
    lm = unwrap(model)
    kind = (type(lm), getattr(lm.config, "_attn_implementation", None))
    if kind not in _PACKS:
        rows = [Encoded([3, 4, 5, 6], [IGNORE, IGNORE, 5, 6]), Encoded([7, 8, 9], [IGNORE, 8, 9])]
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                device = next(model.parameters()).device
                a, _ = answer_logits(model, to_device(collate(rows, pad_id), device))
                b, _ = answer_logits(model, to_device(pack(rows), device))
            _PACKS[kind] = a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=1e-3, rtol=1e-3)
        except (TypeError, ValueError, RuntimeError):  # a model whose forward takes no position_ids
            _PACKS[kind] = False
        finally:
            model.train(was)
    return _PACKS[kind]


def nll(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean negative log-likelihood of the answer tokens (a scalar)."""
    logits, targets = answer_logits(model, batch)
    return F.cross_entropy(logits.float(), targets)


def capped_nll(model, batch: dict[str, torch.Tensor], cap: float | None) -> torch.Tensor:
    """The NLL that gradient ascent raises, bounded: each row's mean answer-token NLL counts up to `cap` and no
    further (a row past the cap gives no gradient), averaged over rows; `cap` None: the plain token-mean `nll`."""
    if cap is None:
        return nll(model, batch)
    logp, n = answer_logprobs(model, batch)
    return (-logp / n.clamp_min(1)).clamp(max=cap).mean()


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(p_ref || p_model); logits and ref_logits are (positions, vocab).

    Zero exactly when the two distributions agree at every position.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    logp = F.log_softmax(logits.float(), -1)
    ref_logp = F.log_softmax(ref_logits.float(), -1)
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1).mean()


def top_k_reference(ref_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A reference distribution kept as its `k` most likely tokens: (log-probs (positions, k) float32, token ids
    (positions, k) int64). What `kl_to_top_k` compares against; about vocab / k times smaller than the logits."""
    logp = F.log_softmax(ref_logits.float(), -1)
    values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return values, ids


def kl_to_top_k(logits: torch.Tensor, ref_logp: torch.Tensor, ref_ids: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(p_ref || p_model) with p_ref kept as its top-k tokens and the rest of the
    vocabulary lumped into one "other" outcome for both distributions (the KL of the coarsened distributions: a
    lower bound of the full KL, equal to it when the top k hold all of p_ref's mass, and zero exactly when the model
    gives the same probabilities to those k tokens). logits (positions, vocab); ref_logp, ref_ids (positions, k)."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    logp = F.log_softmax(logits.float(), -1).gather(-1, ref_ids)
    ref_p = ref_logp.exp()
    head = (ref_p * (ref_logp - logp)).sum(-1)
    ref_tail = (1 - ref_p.sum(-1)).clamp_min(1e-12)
    model_tail = (1 - logp.exp().sum(-1)).clamp_min(1e-12)
    return (head + ref_tail * (ref_tail.log() - model_tail.log())).mean()


def ewc_penalty(named_params, fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> torch.Tensor:
    """½ Σ F (θ − θ*)² over the parameters that have a Fisher entry; `named_params` yields (name, tensor)."""
    total = None
    for name, p in named_params:
        if name in fisher:
            term = (fisher[name].to(p.device) * (p - anchor[name].to(p.device, p.dtype)) ** 2).sum()
            total = term if total is None else total + term
    return 0.5 * total if total is not None else torch.zeros(())


def diagonal_fisher(model, batches: list[dict], named_params) -> dict[str, torch.Tensor]:
    """Empirical diagonal Fisher: the mean over `batches` of the squared gradient of the answer NLL.

    With one example per batch this is the textbook estimate. Uses autograd.grad, so no .grad is left behind.
    """
    names, params = zip(*named_params, strict=False)
    fisher = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    device = params[0].device
    for b in batches:
        grads = torch.autograd.grad(nll(model, {k: v.to(device) for k, v in b.items()}), params)
        for acc, g in zip(fisher, grads, strict=False):
            acc += g.detach().float() ** 2 / len(batches)
    return {n: f.cpu() for n, f in zip(names, fisher, strict=False)}


def orthogonality_penalty(pairs) -> torch.Tensor:
    """Σ Σ_jk |(A_new A_oldᵀ)_jk| over (A_new, A_old) pairs of LoRA down-projections, each (r, in_features): O-LoRA's
    orthogonality loss as its authors' code computes it (the sum of absolute inner products between the rows of the
    new and the old A; the paper writes the squares, which at LoRA's initial scale of ~1/√in are ~100 times weaker).
    Zero when every new adapter reads from a subspace orthogonal to the old adapters'."""
    total = None
    for new, old in pairs:
        term = (new @ old.detach().to(new.dtype).T).abs().sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


def answer_logprobs(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed log-probability of its answer tokens and their number ((batch,), (batch,)) — the
    sequence log-likelihood log π(y|x) that NPO and SimNPO compare, and the per-option MCQ score. Like
    `answer_logits`, the output projection runs at answer positions only."""
    logits, targets = answer_logits(model, batch)
    token = F.log_softmax(logits.float(), -1).gather(-1, targets[:, None])[:, 0]
    keep = batch["labels"][:, 1:] != IGNORE
    row = torch.arange(keep.shape[0], device=keep.device)[:, None].expand_as(keep)[keep]
    total = torch.zeros(keep.shape[0], device=token.device, dtype=token.dtype).index_add(0, row, token)
    return total, keep.sum(-1)


def npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """Negative preference optimisation on forget answers: mean of −(2/β)·log σ(−β·(log π_θ − log π_ref)).

    (2/β)·log 2 where the model equals the reference; it falls towards 0 as the model's likelihood drops below it.
    """
    return (-(2.0 / beta) * F.logsigmoid(-beta * (logp - ref_logp))).mean()


def simnpo_loss(logp: torch.Tensor, lengths: torch.Tensor, beta: float, gamma: float = 0.0) -> torch.Tensor:
    """SimNPO, reference-free and length-normalised: mean of −(2/β)·log σ(−(β/|y|)·log π_θ(y|x) − γ)."""
    return (-(2.0 / beta) * F.logsigmoid(-(beta / lengths.clamp_min(1)) * logp - gamma)).mean()


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens (mask 1) of the mean squared difference along the last dimension; (batch, seq, dim)
    tensors (b may be a (dim,) vector, broadcast), (batch, seq) mask. RMU's forget term is masked_mse(h, c·u) —
    zero at the control vector — and its retain term masked_mse(h, h_frozen)."""
    per_token = ((a.float() - b.float()) ** 2).mean(-1)
    return (per_token * mask).sum() / mask.sum().clamp_min(1)
