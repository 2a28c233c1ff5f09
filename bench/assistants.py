"""Several assistants in one `forgetlab serve`: memory and speed against one assistant per server, and the answers
against each served alone (the bundled model, real servers on loopback, the official `openai` client).

Two assistants get one short session each (one epoch, no rephrasings: this measures serving, not learning), then:
a server of `a` alone, one of `b` alone, and one serving both (`--assistant a --assistant b`). Recorded: each
server's resident memory after answering, the decoding rate (completion tokens per second, the questions asked one
after another) and whether every answer of the shared server equals the one its assistant's own server gave.
Each assistant is its own merged model in the shared server (sessions merge into the base weights), so memory is
expected to grow by about one model per assistant.
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
FILES = {"a": "examples/sessions/cs_faq.json", "b": "examples/sessions/library_faq.json"}


def answers(server: Server, model: str) -> tuple[dict, float]:
    c, out, tokens, spent = client(server.url), {}, 0, 0.0
    for q in QUESTIONS:
        t0 = time.perf_counter()
        r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": q}], max_tokens=32)
        spent += time.perf_counter() - t0
        tokens += r.usage.completion_tokens
        out[q] = r.choices[0].message.content
    return out, tokens / spent


def main() -> dict:
    home = tempfile.mkdtemp(prefix="forgetlab-assistants-")
    exe = Path(sys.executable).with_name("forgetlab")
    for name, path in FILES.items():
        subprocess.run([str(exe), "session", "train", str(ROOT / path), "--assistant", name, "--home", home,
                        "--epochs", "1", "--rephrase", "0"], check=True, capture_output=True)
    out = {}
    alone = {}
    for names in (["a"], ["b"], ["a", "b"]):
        server = Server([arg for n in names for arg in ("--assistant", n)] + ["--home", home])
        try:
            got = {n: answers(server, n) for n in names}
            row = {"rss_mb": round(server.rss_mb(), 1),
                   "tokens_per_s": {n: round(rate, 1) for n, (_, rate) in got.items()}}
            if len(names) == 1:
                alone[names[0]] = got[names[0]][0]
            else:
                row["same_answers_as_alone"] = all(got[n][0] == alone[n] for n in names)
        finally:
            server.stop()
        out[" + ".join(names)] = row
        print(f"serve --assistant {' --assistant '.join(names)}: {json.dumps(row)}", flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
