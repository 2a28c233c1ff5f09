"""The training loop: the only place that calls `backward()` and `optimizer.step()`.

Plain PyTorch: AdamW (or Lion) over the trainable parameters, gradient accumulation, clipping, linear warmup then cosine
decay, length-grouped batches, and a per-step history (loss, lr, grad norm, tokens/s). Same seed, same losses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from .batching import Encoded, collate, length_grouped, to_device
from .config import TrainConfig


def warmup_cosine(total_steps: int, warmup_ratio: float, min_ratio: float) -> Callable[[int], float]:
    """lr multiplier at step s: linear 0→1 over the warmup steps, then cosine 1→min_ratio at the last step."""
    warmup = int(round(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup - 1)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_optimizer(params, cfg: TrainConfig):
    """AdamW, or Lion (`train.optimizer: lion`, the lion-pytorch package) over `params`."""
    if cfg.optimizer == "lion":
        from lion_pytorch import Lion

        return Lion(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def steps_for(n_examples: int, cfg: TrainConfig) -> int:
    """Optimizer steps one task takes."""
    return math.ceil(math.ceil(n_examples / cfg.batch_size) / cfg.grad_accum) * cfg.epochs


def train(model, examples: list[Encoded], cfg: TrainConfig, method, ctx, pad_id: int, *, seed: int,
          on_step: Callable[[dict], None] | None = None, on_epoch: Callable[[dict], None] | None = None,
          resume: dict | None = None, stop: Callable[[dict], bool] | None = None, optimizer=None,
          lr_scale: Callable[[], float] | None = None) -> list[dict]:
    """Train `model`'s trainable parameters on `examples` with `method.loss`; return the per-step history.

    Each history row: step, epoch, loss (mean over the accumulated batches), lr, grad_norm, tokens, tokens_per_s.
    `on_epoch` receives a checkpoint after every epoch (epoch, optimizer, scheduler, RNG state, history so far);
    passing it back as `resume` (with the trainable weights restored by the caller) carries on exactly where the
    checkpoint was taken: the same batches, dropout masks and losses as an uninterrupted run.
    `stop`, when given, is asked after every step (with its history row) whether to end training there.
    `optimizer`, when given, is used (and left with its moments) instead of a fresh one: its learning rate and
    weight decay are set from `cfg` (the online learner's persistent optimizer across turns).
    `lr_scale`, when given, is read before every step and multiplies that step's scheduled learning rate (the
    unlearning guards' retreat: lower once a floor was crossed).
    """
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optimizer or make_optimizer(params, cfg)
    if optimizer is not None:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] = cfg.lr  # the scheduler below starts from this update's lr
            group["weight_decay"] = cfg.weight_decay
    total = steps_for(len(examples), cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, cfg.warmup_ratio, cfg.min_lr_ratio))
    lengths = [len(e.input_ids) for e in examples]
    torch.manual_seed(seed)  # dropout masks
    history: list[dict] = []
    first = 0
    if resume:
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        torch.set_rng_state(resume["rng"])
        if device.type == "cuda" and resume.get("cuda_rng") is not None:  # dropout masks drawn on the GPU
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
        history, first = list(resume["history"]), resume["epoch"]
    model.train()
    try:
        for epoch in range(first, cfg.epochs):
            batches = length_grouped(lengths, cfg.batch_size, seed * 1000 + epoch)
            for start in range(0, len(batches), cfg.grad_accum):
                group = batches[start:start + cfg.grad_accum]
                t0, tokens, loss_sum = time.perf_counter(), 0, 0.0
                for idx in group:
                    batch = to_device(collate([examples[i] for i in idx], pad_id), device)
                    loss = method.loss(model, batch, ctx) / len(group)
                    loss.backward()
                    loss_sum += loss.item()
                    tokens += int(batch["attention_mask"].sum())
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                if lr_scale is not None:  # the scheduler sets each step's rate afresh from its base
                    for g in opt.param_groups:
                        g["lr"] *= lr_scale()
                lr = opt.param_groups[0]["lr"]
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                dt = time.perf_counter() - t0
                row = {"step": len(history) + 1, "epoch": epoch + 1, "loss": loss_sum, "lr": lr,
                       "grad_norm": float(grad_norm), "tokens": tokens, "tokens_per_s": tokens / dt if dt else 0.0}
                history.append(row)
                if on_step:
                    on_step(row)
                if stop is not None and stop(row):
                    return history
            if on_epoch:
                on_epoch({"epoch": epoch + 1, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                          "rng": torch.get_rng_state(), "history": list(history),
                          "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None})
    finally:
        model.eval()
    return history
