"""Serving speed: three sessions merged into the base (the default) against the same three adapters stacked.

Both hold identical adapters (rank 8 on all seven projections, random non-zero weights as after training) and
answer the same 6 questions greedily through the ModelHolder the server uses, 32 new tokens each. Merging makes
every later session free at inference time; stacked adapters add three low-rank products to every projection.
The ratio is generated tokens per second, merged over stacked; the answers must agree.
"""

from __future__ import annotations

import tempfile
import time

import torch

from common import timed  # noqa: F401  (sets HF_HUB_OFFLINE)
from forgetlab.config import ModelConfig, SessionConfig
from forgetlab.sessions.compose import add_session_adapter, load_chain, save_session_adapter
from forgetlab.sessions.holder import Loaded, ModelHolder
from forgetlab.sessions.settings import resolve
from forgetlab.sessions.store import Store

QUESTIONS = ["Who chairs the computer science department?", "When is move-in day?", "What is the capital of Japan?",
             "How do I apply for housing?", "Who teaches CS 101?", "Where is the tutoring center?"]


def fake_sessions(home: str, n: int = 3) -> Store:
    """An assistant with n stacked sessions whose adapters have random non-zero B matrices."""
    store = Store(home, "bench")
    store.create("bundled", "stack")
    lora = resolve(SessionConfig(), 32, [40] * 32, 0).lora  # the settings a 32-record file gets
    for k in range(1, n + 1):
        model, _ = load_chain(store, list(range(1, k)), ModelConfig(), "stack")
        torch.manual_seed(k)
        model = add_session_adapter(model, k, lora)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if f"lora_B.s{k:03d}" in name:
                    p.normal_(0, 0.02)
        save_session_adapter(model, k, store.session_dir(k) / "adapter")
        (store.session_dir(k) / "session.json").write_text('{"parent": %s}' % (k - 1 if k > 1 else "null"))
    return store


def tokens_per_s(holder: ModelHolder) -> tuple[float, list[str]]:
    holder.complete([{"role": "user", "content": "warm up"}], max_tokens=4)
    t0, tokens, answers = time.perf_counter(), 0, []
    for q in QUESTIONS:
        done = holder.complete([{"role": "user", "content": q}], max_tokens=32)
        tokens += done.completion_tokens
        answers.append(done.text)
    return tokens / (time.perf_counter() - t0), answers


def main() -> dict:
    with tempfile.TemporaryDirectory() as home:
        store = fake_sessions(home)
        results = {}
        for mode in ("merge", "stack"):
            model, tok = load_chain(store, [1, 2, 3], ModelConfig(), mode)
            holder = ModelHolder(lambda model=model, tok=tok: Loaded(model, tok, "bench", 3, 0.0))
            results[mode] = tokens_per_s(holder)
    same = sum(a == b for a, b in zip(results["merge"][1], results["stack"][1], strict=True))
    out = {"merged_tokens_per_s": round(results["merge"][0], 1), "stacked_tokens_per_s": round(results["stack"][0], 1),
           "ratio": round(results["merge"][0] / results["stack"][0], 2), "same_answers": f"{same}/{len(QUESTIONS)}"}
    print(f"serving: merged {out['merged_tokens_per_s']} tok/s, stacked {out['stacked_tokens_per_s']} tok/s, "
          f"ratio {out['ratio']}x, same answers {out['same_answers']}")
    return out


if __name__ == "__main__":
    main()
