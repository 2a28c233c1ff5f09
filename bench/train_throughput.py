"""Training tokens/s: forgetlab's loop against a plain transformers Trainer + PEFT script.

Same model (bundled, LoRA "light"), same records (facts:people, answer-only labels), same batch size, epochs,
learning rate, warmup and cosine schedule. The Trainer pads each random batch to its longest record and projects
every position onto the vocabulary; forgetlab groups records by length and projects answer positions only.
"""

from __future__ import annotations

import tempfile

import torch

from common import bundled, timed
from forgetlab.batching import IGNORE, collate, encode
from forgetlab.config import DataConfig, TrainConfig
from forgetlab.data import load_task
from forgetlab.loop import train
from forgetlab.losses import nll
from forgetlab.methods import MethodContext, build_method

EPOCHS, BATCH, LR = 2, 8, 5e-4
WARMUP = 2  # 10% of the 18 optimizer steps, as warmup_ratio=0.1 gives in forgetlab's loop


def records(tok):
    task = load_task("facts:people", DataConfig())
    return [encode(tok, ex, 512) for ex in task.train]


def run_ours(enc, tok) -> float:
    model, _ = bundled()
    cfg = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR, warmup_ratio=0.1, min_lr_ratio=0.0)
    _, seconds = timed(train, model, enc, cfg, build_method("naive"), MethodContext(0), tok.pad_token_id, seed=0)
    return seconds


def run_trainer(enc, tok) -> float:
    from transformers import Trainer, TrainingArguments

    model, _ = bundled()
    data = [{"input_ids": e.input_ids, "labels": e.labels} for e in enc]

    def pad(rows):
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id)
        labels = torch.full((len(rows), width), IGNORE)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=BATCH, num_train_epochs=EPOCHS,
                                 learning_rate=LR, warmup_steps=WARMUP, lr_scheduler_type="cosine", max_grad_norm=1.0,
                                 save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, seed=0,
                                 logging_strategy="no", dataloader_num_workers=0, remove_unused_columns=False)
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=pad)
        _, seconds = timed(trainer.train)
    return seconds


def main() -> dict:
    model, tok = bundled()
    enc = records(tok)
    nll(model, collate(enc[:BATCH], tok.pad_token_id)).backward()  # warm-up
    del model
    tokens = EPOCHS * sum(len(e.input_ids) for e in enc)
    t_ours = run_ours(enc, tok)
    t_trainer = run_trainer(enc, tok)
    result = {"tokens": tokens, "ours_tps": tokens / t_ours, "trainer_tps": tokens / t_trainer,
              "ratio": t_trainer / t_ours}
    print(f"training: {tokens} tokens; forgetlab loop {result['ours_tps']:.0f} tok/s, "
          f"Trainer+PEFT {result['trainer_tps']:.0f} tok/s -> {result['ratio']:.2f}x")
    return result


if __name__ == "__main__":
    main()
