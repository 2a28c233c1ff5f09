"""Continuous batching (sessions/batch.py): concurrent requests decoded together give, token for token, the answers
each gets alone; sequences join a running batch and leave it; an update waits for the batch and the batch for it."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from forgetlab.sessions.batch import PaddedBatch, left
from forgetlab.sessions.holder import Loaded, ModelHolder

from .conftest import tiny_llama

PROMPTS = ["Hi", "What is the capital of France? Please answer in one word, then explain.", "Name a colour.",
           "Tell me about the sea, the sky and the mountains in a long sentence.", "2 + 2?", "Who wrote Hamlet?"]


def holders(tokenizer, max_batch: int):
    model = tiny_llama(len(tokenizer), seed=3)
    serial = ModelHolder(lambda: Loaded(model, tokenizer, "t", None, 0.0))
    batched = ModelHolder(lambda: Loaded(model, tokenizer, "t", None, 0.0))
    batched.batch(max_batch)
    return serial, batched


def ask_together(holder, prompts, **kw) -> list:
    out = [None] * len(prompts)

    def ask(i):
        out[i] = holder.complete([{"role": "user", "content": prompts[i]}], **kw)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
        time.sleep(0.01)  # arrivals spread out: later ones join a batch already decoding
    for t in threads:
        t.join()
    return out


@pytest.mark.parametrize("max_batch", [2, 8])
def test_batched_answers_are_the_one_at_a_time_answers_token_for_token(tokenizer, max_batch):
    serial, batched = holders(tokenizer, max_batch)
    limits = [5, 17, 9, 24, 3, 12]  # each sequence leaves the batch at its own step
    want = [serial.complete([{"role": "user", "content": p}], max_tokens=n) for p, n in zip(PROMPTS, limits,
                                                                                            strict=True)]
    got = [None] * len(PROMPTS)

    def ask(i):
        got[i] = batched.complete([{"role": "user", "content": PROMPTS[i]}], max_tokens=limits[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w, g in zip(want, got, strict=True):
        assert (g.raw, g.completion_tokens, g.finish_reason, g.text) == (w.raw, w.completion_tokens, w.finish_reason,
                                                                          w.text)
    assert any(w.completion_tokens > 0 for w in want)


def test_sampling_with_a_seed_and_stop_strings_match_too(tokenizer):
    serial, batched = holders(tokenizer, 8)
    kw = {"max_tokens": 12, "temperature": 0.9, "top_p": 0.9, "seed": 7}
    want = [serial.complete([{"role": "user", "content": p}], **kw) for p in PROMPTS]
    assert [g.raw for g in ask_together(batched, PROMPTS, **kw)] == [w.raw for w in want]
    stop = want[1].raw[3:6] or "x"  # a stop string the answer reaches: the reader ends it, its row leaves
    want = [serial.complete([{"role": "user", "content": p}], max_tokens=12, stop=[stop]) for p in PROMPTS]
    got = ask_together(batched, PROMPTS, max_tokens=12, stop=[stop])
    assert [(g.text, g.finish_reason) for g in got] == [(w.text, w.finish_reason) for w in want]


def test_a_hung_up_request_leaves_the_batch_and_the_others_finish(tokenizer):
    serial, batched = holders(tokenizer, 8)
    cancel = threading.Event()
    pieces = batched.stream([{"role": "user", "content": PROMPTS[3]}], max_tokens=200, cancel=cancel)
    others = threading.Thread(target=lambda: ask_together(batched, PROMPTS[:2], max_tokens=30))
    others.start()
    cancel.set()  # the client hangs up before reading anything
    done = [p for p in pieces][-1]
    others.join(timeout=60)
    assert done.finish_reason == "cancelled" and done.completion_tokens < 200 and not others.is_alive()


def test_an_update_runs_between_batches_never_during_one(tokenizer):
    serial, batched = holders(tokenizer, 8)
    events = []
    model = batched.current.model
    real = model.forward

    def forward(*a, **k):
        events.append("decode")
        return real(*a, **k)

    model.forward = forward
    threads = [threading.Thread(target=lambda p=p: batched.complete([{"role": "user", "content": p}], max_tokens=40))
               for p in PROMPTS]
    for t in threads:
        t.start()
    time.sleep(0.05)

    def update(loaded):
        events.append("update start")
        time.sleep(0.05)
        events.append("update end")

    batched.update(update)  # waits for the running batch to drain; no sequence joins meanwhile
    late = batched.complete([{"role": "user", "content": "Hi"}], max_tokens=3)  # after the update: a batch of its own
    for t in threads:
        t.join()
    start, end = events.index("update start"), events.index("update end")
    assert end == start + 1  # nothing decoded while the update ran
    assert late.completion_tokens <= 3
    model.forward = real


def test_under_load_answers_get_as_long_as_the_last_update_took(tokenizer):
    """An update right after another waits while requests are answered, as long as the first took; on an idle
    server it runs at once."""
    _, batched = holders(tokenizer, 8)
    times = {}

    def update(name):
        def fn(loaded):
            times[name] = [time.monotonic()]
            time.sleep(0.4)
            times[name].append(time.monotonic())
        return fn

    batched.update(update("idle 1"))
    batched.update(update("idle 2"))
    assert times["idle 2"][0] - times["idle 1"][1] < 0.1
    decoded, stop = [], time.monotonic() + 3.0

    def client(p):
        while time.monotonic() < stop:
            batched.complete([{"role": "user", "content": p}], max_tokens=4)
            decoded.append(time.monotonic())

    clients = [threading.Thread(target=client, args=(p,)) for p in PROMPTS]
    for t in clients:
        t.start()
    time.sleep(0.2)
    batched.update(update("busy 1"))
    batched.update(update("busy 2"))
    for t in clients:
        t.join()
    (s1, e1), (s2, _) = times["busy 1"], times["busy 2"]
    assert s2 - e1 >= 0.9 * (e1 - s1)  # the answers' share, spent answering:
    assert sum(e1 < t < s2 for t in decoded) >= len(PROMPTS)


def test_a_kept_prompt_start_gives_the_same_answers_and_an_update_drops_it(tokenizer):
    """Prompts sharing the system turn are prefilled from past the kept start: the answers are the one-at-a-time
    answers token for token; after an update changes the weights the start is computed again (stale keys would
    give the old model's answer)."""
    serial, batched = holders(tokenizer, 8)
    sched = batched._scheduler
    limits = [5, 17, 9, 24, 3, 12]
    for i, (p, n) in enumerate(zip(PROMPTS, limits, strict=True)):  # one at a time: each starts like the last
        want = serial.complete([{"role": "user", "content": p}], max_tokens=n)
        assert batched.complete([{"role": "user", "content": p}], max_tokens=n).raw == want.raw
        assert (sched.prefix is not None) == (i > 0)  # the second prompt finds the start it shares with the first
        assert (sched.reused > 0) == (i > 1)  # ... and the third is prefilled from past it
    start = list(sched.prefix.ids)
    assert len(start) >= 8 and all(tokenizer.decode(start) in tokenizer.decode(batched_ids(batched, p))
                                   for p in PROMPTS)
    before = sched.reused
    got = ask_together(batched, PROMPTS, max_tokens=10)  # together: one padded pass from past the kept start
    assert [g.raw for g in got] == [serial.complete([{"role": "user", "content": p}], max_tokens=10).raw
                                    for p in PROMPTS] and sched.reused > before

    def change(loaded):
        with torch.no_grad():
            for w in loaded.model.parameters():
                w.add_(torch.randn_like(w) * 0.5)

    old = serial.complete([{"role": "user", "content": PROMPTS[1]}], max_tokens=12).raw
    batched.update(change)  # both holders share the model: its weights change under both
    new = serial.complete([{"role": "user", "content": PROMPTS[1]}], max_tokens=12).raw
    assert new != old and batched.complete([{"role": "user", "content": PROMPTS[1]}], max_tokens=12).raw == new
    assert sched.prefix is None  # dropped; the next prompt that starts the same way computes it again
    again = batched.complete([{"role": "user", "content": PROMPTS[2]}], max_tokens=12).raw
    assert again == serial.complete([{"role": "user", "content": PROMPTS[2]}], max_tokens=12).raw
    assert sched.prefix.ids == start


def batched_ids(holder, prompt: str) -> list[int]:
    from forgetlab.batching import prompt_ids
    from forgetlab.sessions.holder import with_system

    return prompt_ids(holder.current.tok, with_system([{"role": "user", "content": prompt}]))


def test_the_loop_moves_to_the_calling_thread_and_stops_when_told(tokenizer):
    """`run_here` (what `serve` does on its main thread): the scheduler's own thread ends, the caller decodes the
    same answers, and once `until()` is true it returns and later requests fail instead of waiting forever."""
    serial, batched = holders(tokenizer, 8)
    sched = batched._scheduler
    own = sched.thread
    want = [serial.complete([{"role": "user", "content": p}], max_tokens=8).raw for p in PROMPTS[:3]]
    got, done = [], threading.Event()

    def client():
        got.extend(g.raw for g in ask_together(batched, PROMPTS[:3], max_tokens=8))
        done.set()

    threading.Thread(target=client).start()
    sched.run_here(until=done.is_set)
    assert got == want and not own.is_alive() and sched.thread is threading.current_thread()
    with pytest.raises(RuntimeError, match="shutting down"):
        batched.complete([{"role": "user", "content": "Hi"}], max_tokens=3)


def test_the_padded_cache_joins_and_trims_by_hand():
    def rows(n, value, pad=0):  # one row: `pad` padding columns, then n columns of `value`
        k = torch.cat([torch.zeros(1, 1, pad, 2), torch.full((1, 1, n, 2), float(value))], dim=2)
        return [k], [-k], torch.tensor([[0] * pad + [1] * n])

    batch = PaddedBatch()
    batch.add(["a"], *rows(2, 1), [2])
    batch.add(["b"], *rows(4, 2), [4])  # longer: the first row is padded on the left
    batch.add(["c"], *rows(1, 3, pad=1), [1])  # shorter (and padded already): padded further
    assert batch.mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]] and batch.lengths == [2, 4, 1]
    assert batch.keys[0][:, 0, :, 0].tolist() == [[0, 0, 1, 1], [2, 2, 2, 2], [0, 0, 0, 3]]
    batch.keep([0, 2])  # "b" leaves: the two columns only it needed go
    assert batch.mask.tolist() == [[1, 1], [0, 1]] and batch.seqs == ["a", "c"] and batch.lengths == [2, 1]
    assert batch.values[0][:, 0, :, 0].tolist() == [[-1, -1], [0, -3]]
    assert left(torch.ones(1, 2, dtype=torch.long), 1).tolist() == [[0, 1, 1]]


def test_the_server_batches_concurrent_clients_and_each_gets_its_alone_answer(tokenizer):
    """The official openai client, 6 at once (3 streaming), against a batched server: each answer is the one the
    one-at-a-time holder gives."""
    import openai

    from forgetlab.serve import create_app

    from .test_serve import serving

    serial, batched = holders(tokenizer, 4)
    want = [serial.complete([{"role": "user", "content": p}], max_tokens=16).text for p in PROMPTS]
    got = [None] * len(PROMPTS)
    with serving(create_app(batched)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)

        def ask(i):
            messages = [{"role": "user", "content": PROMPTS[i]}]
            if i % 2:
                stream = client.chat.completions.create(model="t", messages=messages, max_tokens=16, stream=True)
                got[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            else:
                got[i] = client.chat.completions.create(model="t", messages=messages,
                                                        max_tokens=16).choices[0].message.content

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert got == want
