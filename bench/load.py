"""Load: 1, 8 and 32 concurrent clients against `forgetlab serve` (batched, the default), the same server one request
at a time (`--max-batch 1`, the baseline) and `forgetlab serve --learn` (the bundled model, real servers on loopback,
the official `openai` client), for a bounded time each.

Clients at 32: 12 ask for whole answers, 12 stream (each asks again as soon as it has its answer), 4 send malformed
requests (broken JSON, no messages, temperature 5, an unknown model) and 4 start a stream and hang up after the
first chunk (these two kinds once a second); at 8: 4 whole, 4 streaming; at 1: one asking for whole answers.
Checked: no 5xx; every well-formed answer
is the greedy answer the server gave to the same question alone before the load (plain serve; with --learn the
model changes as it learns, so the answer must be well formed and the learner must have learned); every malformed
request a 4xx with an OpenAI-style error. Recorded: p50/p99 latency and throughput of well-formed requests, and the
server's resident memory over the run (sampled every second after a warm-up).

Baseline, measured in the same run on each server: the same questions asked one at a time by one client; the ratio
is the throughput under load over that rate. Served one at a time the ratio stays near 1 and latency grows with the
queue; batched, concurrent answers share each decoding step.
"""

from __future__ import annotations

import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = ["What is the capital of France?", "Name a primary colour.", "What do bees make?",
             "How many days are in a week?", "What is 2 + 2?", "Which planet do we live on?",
             "What language is spoken in Spain?", "What is the opposite of hot?"]
FACTS = ["My sister's name is Oriel.", "I live in Tromso.", "My dog is called Rex.", "I work at Halden Labs."]
MAX_TOKENS = 8
CLIENTS = {"whole": 12, "stream": 12, "malformed": 4, "hang_up": 4}
LEVELS = {1: {"whole": 1}, 8: {"whole": 4, "stream": 4}, 32: CLIENTS}
"""Clients of each kind at each load level."""
PAUSE = 1.0  # seconds a malformed or hanging-up client waits between requests (the others ask again at once)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, timeout: float = 300) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Server:
    def __init__(self, args: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("forgetlab")
        self.proc = subprocess.Popen([str(exe), "serve", "--port", str(self.port), *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    self.model = json.loads(r.read())["assistant"]
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the server did not come up")

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()  # uvicorn finishes the requests in flight first
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=60)


def client(url: str):
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)


def one_at_a_time(server: Server, rounds: int = 2) -> tuple[dict, list[float]]:
    """The baseline: every question alone, `rounds` times; (answers, latencies)."""
    c, answers, latencies = client(server.url), {}, []
    for _ in range(rounds):
        for q in QUESTIONS:
            t0 = time.perf_counter()
            r = c.chat.completions.create(model=server.model, messages=[{"role": "user", "content": q}],
                                          max_tokens=MAX_TOKENS, extra_body={"learn": False})
            latencies.append(time.perf_counter() - t0)
            answers.setdefault(q, r.choices[0].message.content)
    return answers, latencies


def under_load(server: Server, expected: dict | None, seconds: float, learn: bool, clients: dict = CLIENTS) -> dict:
    """`clients` (kind: count) for `seconds`; expected None: answers are checked for form only (the model is
    learning)."""
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()
    stats = {"latency": [], "ok": 0, "wrong": [], "server_errors": 0, "malformed_4xx": 0, "malformed_other": [],
             "hung_up": 0, "errors": []}

    def record(key, value=1):
        with lock:
            if isinstance(stats[key], list):
                stats[key].append(value)
            else:
                stats[key] += value

    def ask(kind: str, seed: int):
        import openai

        c, rng = client(server.url), random.Random(seed)
        while time.perf_counter() < deadline:
            q = rng.choice(QUESTIONS)
            teach = learn and rng.random() < 0.3
            content = rng.choice(FACTS) if teach else q
            messages = [{"role": "user", "content": content}]
            t0 = time.perf_counter()
            try:
                if kind == "malformed":
                    body = rng.choice([b"{not json", json.dumps({"model": server.model}).encode(),
                                       json.dumps({"model": server.model, "messages": messages,
                                                   "temperature": 5}).encode(),
                                       json.dumps({"model": "nope", "messages": messages}).encode()])
                    status, text = post(f"{server.url}/v1/chat/completions", body)
                    if status >= 500:
                        record("server_errors")
                    elif 400 <= status < 500 and "message" in json.loads(text).get("error", {}):
                        record("malformed_4xx")
                    else:
                        record("malformed_other", (status, text[:200]))
                    time.sleep(PAUSE)
                    continue
                if kind == "hang_up":
                    stream = c.chat.completions.create(model=server.model, messages=messages, max_tokens=32,
                                                       stream=True, extra_body={"learn": False})
                    next(iter(stream))
                    stream.close()  # hang up mid-stream
                    record("hung_up")
                    time.sleep(PAUSE)
                    continue
                extra = {"learn": teach}
                if kind == "stream":
                    chunks = list(c.chat.completions.create(model=server.model, messages=messages, stream=True,
                                                            max_tokens=MAX_TOKENS, extra_body=extra))
                    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
                    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
                    well_formed = finish in (["stop"], ["length"])
                else:
                    r = c.chat.completions.create(model=server.model, messages=messages, max_tokens=MAX_TOKENS,
                                                  extra_body=extra)
                    text, well_formed = r.choices[0].message.content, r.choices[0].finish_reason in ("stop", "length")
                record("latency", time.perf_counter() - t0)
                right = well_formed and isinstance(text, str) and (expected is None or teach or text == expected[q])
                record("ok") if right else record("wrong", (content, text))
            except openai.APIStatusError as e:
                record("server_errors" if e.status_code >= 500 else "errors", f"{e.status_code} {e.message[:100]}")
            except Exception as e:  # a dropped connection or the like: counted, never hidden
                record("errors", f"{type(e).__name__}: {e}"[:200])

    threads = [threading.Thread(target=ask, args=(kind, 1000 * n + i)) for n, (kind, count) in
               enumerate(clients.items()) for i in range(count)]
    memory: list[float] = []

    def sample():
        while time.perf_counter() < deadline:
            memory.append(server.rss_mb())
            time.sleep(1.0)

    t0 = time.perf_counter()
    for t in [*threads, threading.Thread(target=sample)]:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(stats["latency"])
    warm = memory[len(memory) // 4:] or memory  # after a warm-up (the first quarter)
    half = len(warm) // 2
    return {"wall_s": round(wall, 1), "answered": len(lat), "ok": stats["ok"], "wrong": stats["wrong"][:5],
            "server_errors": stats["server_errors"], "malformed_4xx": stats["malformed_4xx"],
            "malformed_other": stats["malformed_other"][:5], "hung_up": stats["hung_up"], "errors": stats["errors"][:5],
            "p50_s": round(statistics.median(lat), 2) if lat else None,
            "p99_s": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2) if lat else None,
            "throughput_per_s": round(len(lat) / wall, 2),
            "rss_mb_first_half": round(statistics.mean(warm[:half]), 1) if half else None,
            "rss_mb_second_half": round(statistics.mean(warm[half:]), 1) if half else None,
            "rss_mb_by_fifth": [round(statistics.mean(memory[k * len(memory) // 5:(k + 1) * len(memory) // 5]), 1)
                                for k in range(5)] if len(memory) >= 5 else None,
            "rss_mb_max": round(max(memory), 1) if memory else None}


MODES = {"serve --max-batch 1": ["--max-batch", "1"], "serve": [], "serve --learn": ["--learn"]}


def main(seconds: float = 60, modes: tuple[str, ...] = tuple(MODES), levels: tuple[int, ...] = tuple(LEVELS)) -> dict:
    out = {}
    home = tempfile.mkdtemp(prefix="forgetlab-load-")
    for mode in modes:
        args = MODES[mode] + (["--assistant", "load", "--home", home] if "--learn" in MODES[mode] else [])
        server = Server(args)
        try:
            expected, alone = one_at_a_time(server)
            base_throughput = len(alone) / sum(alone)
            out[mode] = {"alone_p50_s": round(statistics.median(alone), 2),
                         "alone_throughput_per_s": round(base_throughput, 2)}
            for level in levels:
                learn = "--learn" in args
                result = under_load(server, None if learn else expected, seconds, learn, LEVELS[level])
                result["throughput_ratio"] = round(result["throughput_per_s"] / base_throughput, 2)
                out[mode][level] = result
                print(f"{mode}, {level} clients: throughput {result['throughput_per_s']}/s "
                      f"({result['throughput_ratio']}x one client alone), p50 {result['p50_s']} s, p99 "
                      f"{result['p99_s']} s, 5xx {result['server_errors']}, wrong {len(result['wrong'])}, "
                      f"errors {len(result['errors'])}, rss MB by fifth {result['rss_mb_by_fifth']}", flush=True)
            if "--learn" in args:  # under load answers come first: the learner catches up once the clients stop
                t0 = time.perf_counter()
                with urllib.request.urlopen(f"{server.url}/v1/learning/wait", data=b"", timeout=3600) as r:
                    out[mode]["learning"] = {k: v for k, v in json.loads(r.read()).items()
                                             if k in ("turns", "turns_learned", "facts_stored", "facts_learned",
                                                      "updates_rejected", "errors")}
                out[mode]["learning"]["caught_up_after_s"] = round(time.perf_counter() - t0, 1)
                print(f"{mode}: learning {out[mode]['learning']}", flush=True)
        finally:
            server.stop()
    return out


def memory_run(seconds: float = 300) -> dict:
    """The batched server under 32 clients for `seconds`: resident memory by fifth of the run (flat: no leak)."""
    return main(seconds, ("serve",), (32,))


if __name__ == "__main__":
    # python bench/load.py [SECONDS [MODE [LEVEL]]]: MODE one of MODES, LEVEL 1, 8 or 32 (default: all)
    print(json.dumps(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60, tuple(sys.argv[2:3]) or tuple(MODES),
                          tuple(int(x) for x in sys.argv[3:4]) or tuple(LEVELS)), indent=2, default=str))
