"""Several assistants in one `forgetlab serve`, in both layouts: each assistant's sessions as one adapter on one
shared base (`--layout shared`, the default) and each merged into its own copy of the model (`--layout merged`), at
2, 3 and 4 assistants, against one server per assistant (the bundled model, real servers on loopback, the official
`openai` client).

Four assistants get short sessions (one epoch, no rephrasings: this measures serving, not learning); `d` has two,
so its chain is two adapters combined. Recorded per server: resident memory after answering, the decoding rate
(completion tokens per second, the questions asked one after another, each assistant in turn) and whether every
answer equals the one the assistant's own server gave.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from load import Server, client  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["Who is the chair of the Computer Science department?", "When is move-in day?",
             "What are the library's opening hours?", "What is the capital of France?"]
FILES = {"a": ["examples/sessions/cs_faq.json"], "b": ["examples/sessions/library_faq.json"],
         "c": ["examples/sessions/housing_faq.json"],
         "d": ["examples/sessions/cs_dept.json", "examples/sessions/housing.json"]}


def answers(server: Server, model: str) -> tuple[dict, float]:
    c, out, tokens, spent = client(server.url), {}, 0, 0.0
    for q in QUESTIONS:
        t0 = time.perf_counter()
        r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": q}], max_tokens=32)
        spent += time.perf_counter() - t0
        tokens += r.usage.completion_tokens
        out[q] = r.choices[0].message.content
    return out, tokens / spent


def serve(home: str, names: list[str], layout: str | None) -> tuple[dict, dict]:
    """(row, answers by assistant) of one server of `names`."""
    server = Server([arg for n in names for arg in ("--assistant", n)] + ["--home", home]
                    + (["--layout", layout] if layout else []))
    try:
        got = {n: answers(server, n) for n in names}
        row = {"rss_mb": round(server.rss_mb(), 1), "tokens_per_s": {n: round(rate, 1) for n, (_, rate) in got.items()}}
    finally:
        server.stop()
    return row, {n: a for n, (a, _) in got.items()}


def main() -> dict:
    home = tempfile.mkdtemp(prefix="forgetlab-assistants-")
    exe = Path(sys.executable).with_name("forgetlab")
    for name, paths in FILES.items():
        for path in paths:
            subprocess.run([str(exe), "session", "train", str(ROOT / path), "--assistant", name, "--home", home,
                            "--epochs", "1", "--rephrase", "0"], check=True, capture_output=True)
    out, alone = {}, {}
    for name in FILES:
        row, got = serve(home, [name], None)
        alone[name] = got[name]
        out[name] = row
        print(f"serve --assistant {name}: {json.dumps(row)}", flush=True)
    for n in (2, 3, 4):
        names = list(FILES)[:n]
        for layout in ("merged", "shared"):
            row, got = serve(home, names, layout)
            row["same_answers_as_alone"] = all(got[a] == alone[a] for a in names)
            row["alone_rss_mb_sum"] = round(sum(out[a]["rss_mb"] for a in names), 1)
            out[f"{n} {layout}"] = row
            print(f"serve --layout {layout} --assistant {' --assistant '.join(names)}: {json.dumps(row)}", flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
