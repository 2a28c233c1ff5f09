"""One optimizer step of an online edit on the bundled model, the adapter on the top half of the layers: the whole
forward (baseline) against the kept states under the trained layers (`below.Below`), measured in the same run.

The rows are what an edit update trains at T = 34: the edit's prompt through the chat template and as plain text,
one form each of 8 rehearsed edits, 4 anchor prompts (the assistant's own answers to built-in questions), packed
into one sequence as the learner packs them. Each step is a forward, the loss and a backward; the median of
`STEPS` steps after one warm-up step (the kept states are filled there, as on an update's first step).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from common import timed  # noqa: F401  (sets HF_HUB_OFFLINE)
from forgetlab.batching import encode, encode_continuation, pack
from forgetlab.below import Below
from forgetlab.config import LoraSettings, ModelConfig
from forgetlab.data.records import Example, user
from forgetlab.losses import answer_logits
from forgetlab.model import load_base
from forgetlab.online.edits import read_edits
from forgetlab.retain import build_anchors

ROOT = Path(__file__).resolve().parents[1]
STEPS = 6


def rows(tok):
    edits = read_edits(ROOT / "examples" / "edits" / "invented_zsre.json")
    chat = [encode(tok, Example(user(e.prompt), e.target), 256) for e in edits[:9]]
    plain = encode_continuation(tok, edits[0].prompt, " " + edits[0].target, 256)
    return [chat[0], plain, *chat[1:]]


def steps(model, batch, below) -> list[float]:
    out = []
    for _ in range(STEPS + 1):
        t0 = time.perf_counter()
        model.zero_grad()
        logits, targets = answer_logits(model, batch, below)
        torch.nn.functional.cross_entropy(logits.float(), targets).backward()
        out.append(time.perf_counter() - t0)
    return out[1:]


def main() -> dict:
    from forgetlab.model import attach_lora

    model, tok = load_base(ModelConfig())
    torch.manual_seed(0)
    model = attach_lora(model, LoraSettings(rank=8, alpha=16, dropout=0.0, top_layers=0.5,
                                            targets=("q_proj", "k_proj", "v_proj", "o_proj")), "online")
    anchors = build_anchors(model, tok, 256, ["online"], questions=True).examples[:4]
    batch = pack(rows(tok) + anchors)
    model.train()
    whole = statistics.median(steps(model, batch, None))
    below = Below(model, tok.pad_token_id)
    kept = statistics.median(steps(model, batch, below))
    return {"tokens": int(batch["input_ids"].shape[1]), "rows": len(rows(tok)) + len(anchors),
            "first_trained_layer": below.start, "layers": len(below.decoder.layers),
            "step_whole_s": round(whole, 3), "step_kept_below_s": round(kept, 3), "speedup": round(whole / kept, 2)}


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
