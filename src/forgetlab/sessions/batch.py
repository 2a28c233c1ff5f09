"""Continuous batching for the holder: requests that arrive while a batch is decoding join it at the next step.

One scheduler thread owns generation. The requests that arrive together are prefilled in one padded forward pass and
their key/value caches join the running batch, left-padded to the batch's length; every step then decodes one token
for every sequence in one forward pass (an attention mask hides the padding, each row keeps its own positions). A
sequence leaves the batch when it ends (end of answer, its token limit, a stop string its reader saw, or its client
hung up); the padding no row needs any more is trimmed. Decoding one token of a 135M model is bound by reading the
weights, so a batch of 8 costs little more than one sequence.

Prompts start alike (the chat template, the system turn, a conversation's earlier turns): the keys and values of the
longest start that the joining prompts share with each other or with the last prompt are computed once and kept, and
later prompts that begin the same way are prefilled from their first token past it. Causal attention makes this exact:
a token's keys and values depend only on the tokens before it. The kept start is dropped whenever the weights change.

Only sequences that answer with the same model and the same route (the online router may switch the learned
adapter off for a request) share a batch; the others wait for it to drain. Updates of the weights (`holder.update`)
never run while a batch decodes: once one is waiting no sequence joins, the batch drains, the update runs, and
the next batch starts after it. Under load the answers come first: after an update, the next one waits while
requests are being answered, for `ANSWER_SHARE` times as long as the last update took (or until nothing is left to
answer), so a learning server spends at most a third of its time learning while clients wait; learning falls behind
under load and catches up when it ends.
"""

from __future__ import annotations

import atexit
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import DynamicCache


@dataclass
class Sequence:
    """One request in the scheduler: its prompt, limits and sampling, and where its tokens go (`out`: each new token
    id, then None when it has ended, with `reason` set)."""

    loaded: object
    ids: list[int]
    max_tokens: int
    pick: Callable[[torch.Tensor], int]
    eos: set[int]
    route: object = None
    pad: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    out: queue.Queue = field(default_factory=queue.Queue)
    produced: int = 0
    reason: str = "length"
    last: int | None = None

    def group(self) -> tuple:
        return id(self.loaded), self.route


ANSWER_SHARE = 2.0
"""Under load, answering time owed after each update, as a multiple of the update's own time."""

MIN_SHARED = 8
"""Tokens: a shorter common start of the prompts is not worth keeping; it is prefilled with each prompt."""


@dataclass
class Prefix:
    """The keys and values of a prompt start (`ids`), computed with `loaded`'s model answering by `route`."""

    loaded: object
    route: object
    ids: list[int]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]


def common_start(rows: list[list[int]]) -> int:
    """How many leading tokens every row shares."""
    first, n = rows[0], min(len(r) for r in rows)
    for i in range(n):
        if any(r[i] != first[i] for r in rows[1:]):
            return i
    return n


class PaddedBatch:
    """The running batch's key/value cache, one (B, heads, L, dim) tensor per layer and side, left-padded, with its
    attention mask (B, L) and each row's own length (its next position)."""

    def __init__(self):
        self.seqs: list[Sequence] = []
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.mask: torch.Tensor | None = None
        self.lengths: list[int] = []

    def add(self, seqs: list[Sequence], keys: list[torch.Tensor], values: list[torch.Tensor], mask: torch.Tensor,
            lengths: list[int]) -> None:
        """Rows joining: their cache (k, heads, n, dim per layer, left-padded as `mask` (k, n) says) and lengths."""
        n = keys[0].shape[2]
        if self.seqs:
            width = self.keys[0].shape[2]
            if n < width:
                keys, values = [left(k, width - n) for k in keys], [left(v, width - n) for v in values]
                mask = left(mask, width - n)
            elif n > width:
                self.keys, self.values = [left(k, n - width) for k in self.keys], [left(v, n - width) for v in self.values]
                self.mask = left(self.mask, n - width)
            keys = [torch.cat([a, b]) for a, b in zip(self.keys, keys, strict=True)]
            values = [torch.cat([a, b]) for a, b in zip(self.values, values, strict=True)]
            mask = torch.cat([self.mask, mask])
        self.keys, self.values, self.mask = keys, values, mask
        self.seqs += seqs
        self.lengths += lengths

    def step(self, model) -> torch.Tensor:
        """One decoding step for every row (its last token in); the next-token logits (B, vocab)."""
        device = self.mask.device
        cache = DynamicCache(ddp_cache_data=list(zip(self.keys, self.values, strict=True)))
        mask = torch.cat([self.mask, torch.ones(len(self.seqs), 1, dtype=torch.long, device=device)], dim=1)
        step = model(input_ids=torch.tensor([[s.last] for s in self.seqs], device=device), attention_mask=mask,
                     position_ids=torch.tensor([[n] for n in self.lengths], device=device), past_key_values=cache,
                     use_cache=True)
        cache = step.past_key_values
        self.keys, self.values = [layer.keys for layer in cache.layers], [layer.values for layer in cache.layers]
        self.mask, self.lengths = mask, [n + 1 for n in self.lengths]
        return step.logits[:, -1]

    def keep(self, rows: list[int]) -> None:
        """Only `rows` stay; columns no remaining row needs (padding on every row) are dropped."""
        if len(rows) == len(self.seqs):
            return
        self.seqs = [self.seqs[i] for i in rows]
        self.lengths = [self.lengths[i] for i in rows]
        if not rows:
            self.keys, self.values, self.mask = [], [], None
            return
        index = torch.tensor(rows, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        start = int((mask.sum(0) == 0).long().cumprod(0).sum())  # leading all-padding columns
        self.mask = mask[:, start:]
        self.keys = [k.index_select(0, index)[:, :, start:] for k in self.keys]
        self.values = [v.index_select(0, index)[:, :, start:] for v in self.values]


def left(t: torch.Tensor, n: int) -> torch.Tensor:
    """`t` with `n` zero columns in front of its sequence axis (dim 2 of a cache tensor, dim 1 of a mask)."""
    if t.dim() == 2:
        return F.pad(t, (n, 0))
    return F.pad(t, (0, 0, n, 0))


class Scheduler:
    """The thread that decodes every sequence submitted to it, in batches of at most `max_batch`."""

    def __init__(self, lock: threading.Lock, context: Callable[[object, object], contextlib.AbstractContextManager],
                 max_batch: int = 8):
        self.lock, self.context, self.max_batch = lock, context, max_batch
        self.cond = threading.Condition()
        self.pending: list[Sequence] = []
        self.updates_waiting = 0
        self.running = False  # a batch is decoding
        self.answers_until = 0.0  # (monotonic) under load, the next update waits until then: the answers' share
        self.closed = False
        self.handover = False  # the loop moves to another thread (`run_here`)
        self.prefix: Prefix | None = None  # the kept prompt start
        self.recent: tuple | None = None  # (loaded, route, ids) of the last prompt prefilled
        self.reused = 0  # prompt tokens taken from the kept start instead of computed (the benchmark reports it)
        self.thread = threading.Thread(target=self._loop, daemon=True, name="forgetlab-batch")
        self.thread.start()
        atexit.register(self.close)  # a thread cut off inside torch at interpreter exit aborts the process

    def close(self) -> None:
        """Finish the running batch, take no more, and end the thread."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=30)

    def run_here(self, until: Callable[[], bool]) -> None:
        """Decode on the calling thread from now on (the scheduler's own thread ends) until `until()` is true, then
        close. torch decodes a sequence faster on the thread that loaded the model than on a thread of its own
        (bench/RESULTS.md); `serve` calls this on its main thread and runs the HTTP server on another."""
        with self.cond:
            self.handover = True
            self.cond.notify_all()
        self.thread.join()
        self.thread, self.handover = threading.current_thread(), False
        try:
            self._loop(until)
        finally:
            self.close()

    def submit(self, seq: Sequence) -> Sequence:
        with self.cond:
            if self.closed:
                raise RuntimeError("the server is shutting down")
            self.pending.append(seq)
            self.cond.notify_all()
        return seq

    @contextlib.contextmanager
    def update(self):
        """Hold the model for an update: no sequence joins once one waits; it runs when the batch has drained. While
        requests are being answered it first waits out the answers' share (`ANSWER_SHARE` × the last update's time)."""
        with self.cond:
            while (self.pending or self.running) and not self.closed and time.monotonic() < self.answers_until:
                self.cond.wait(timeout=self.answers_until - time.monotonic())
            self.updates_waiting += 1
        start = time.monotonic()
        try:
            with self.lock:
                start = time.monotonic()
                self.prefix = self.recent = None  # keys and values computed by the old weights
                yield
        finally:
            with self.cond:
                self.updates_waiting -= 1
                now = time.monotonic()
                self.answers_until = now + ANSWER_SHARE * (now - start)
                self.cond.notify_all()

    def _admit(self, batch: PaddedBatch) -> list[Sequence]:
        with self.cond:
            if self.updates_waiting:
                return []
            group = batch.seqs[0].group() if batch.seqs else None
            room = self.max_batch - len(batch.seqs)
            taken = []
            for seq in list(self.pending):
                if room <= 0:
                    break
                if group is None:
                    group = seq.group()
                if seq.group() == group:
                    taken.append(seq)
                    self.pending.remove(seq)
                    room -= 1
            return taken

    def _loop(self, until: Callable[[], bool] | None = None) -> None:
        while True:
            with self.cond:
                while (not self.pending or self.updates_waiting) and not self.closed and not self.handover:
                    if until is not None and until():
                        self.closed = True
                        break
                    self.cond.wait(timeout=None if until is None else 0.5)
                if self.handover:
                    return
                if self.closed:
                    for seq in self.pending:
                        self._end(seq, "error", RuntimeError("the server is shutting down"))
                    self.pending.clear()
                    return
                self.running = True
            batch = PaddedBatch()
            try:
                with self.lock, torch.no_grad():
                    while True:
                        self._prefill(batch, self._admit(batch))
                        if not batch.seqs:
                            break
                        self._decode(batch)
            except BaseException as e:  # an interrupt mid-batch (Ctrl-C on the serving thread): its readers are told
                for seq in batch.seqs:
                    self._end(seq, "error", RuntimeError(f"the server stopped ({type(e).__name__})"))
                raise
            finally:
                with self.cond:
                    self.running = False
                    self.cond.notify_all()  # an update waiting out the answers' share need not wait for an idle server

    def _prefill(self, batch: PaddedBatch, seqs: list[Sequence]) -> None:
        """The joining sequences' prompts in one forward pass (left-padded, masked, each row at its own positions),
        from the end of the start they share with the kept one when there is one; their first tokens picked and
        their caches added to the batch."""
        if not seqs:
            return
        try:
            model = seqs[0].loaded.model
            device = next(model.parameters()).device
            pad, k = seqs[0].pad, len(seqs)
            with self.context(seqs[0].loaded, seqs[0].route):
                n, past = self._shared(seqs, model, device)
                width = max(len(s.ids) - n for s in seqs)
                ids = torch.tensor([[pad] * (width - len(s.ids) + n) + s.ids[n:] for s in seqs], device=device)
                tail = torch.tensor([[0] * (width - len(s.ids) + n) + [1] * (len(s.ids) - n) for s in seqs],
                                    device=device)
                mask = torch.cat([torch.ones(k, n, dtype=torch.long, device=device), tail], dim=1)
                cache = DynamicCache(ddp_cache_data=[(a.expand(k, -1, -1, -1), b.expand(k, -1, -1, -1))
                                                     for a, b in past]) if n else None
                step = model(input_ids=ids, attention_mask=mask, position_ids=n + (tail.cumsum(1) - 1).clamp(min=0),
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
            self.recent = (seqs[0].loaded, seqs[0].route, seqs[-1].ids)
            logits = step.logits[:, -1].cpu()
            keep = mask[:, None, :, None].to(step.past_key_values.layers[0].keys.dtype)  # padding stays exactly zero
            keys = [layer.keys * keep for layer in step.past_key_values.layers]
            values = [layer.values * keep for layer in step.past_key_values.layers]
        except Exception as e:  # these requests fail, not the scheduler
            for seq in seqs:
                self._end(seq, "error", e)
            return
        rows = [i for i, seq in enumerate(seqs) if self._take(seq, seq.pick(logits[i]))]
        if rows:
            index = torch.tensor(rows, device=device)
            batch.add([seqs[i] for i in rows], [k.index_select(0, index) for k in keys],
                      [v.index_select(0, index) for v in values], mask.index_select(0, index),
                      [len(seqs[i].ids) for i in rows])

    def _shared(self, seqs: list[Sequence], model, device) -> tuple[int, list[tuple]]:
        """How many leading prompt tokens the joining sequences take from a kept start, and its (keys, values) per
        layer, batch 1. The kept start serves as far as they all share it; otherwise the start they share with each
        other and with the last prompt is computed and kept. Each sequence keeps at least one token of its own."""
        loaded, route = seqs[0].loaded, seqs[0].route
        room = min(len(s.ids) for s in seqs) - 1
        p = self.prefix
        if p is not None and p.loaded is loaded and p.route == route:
            n = min(common_start([p.ids, *(s.ids for s in seqs)]), room)
            if n >= MIN_SHARED:
                self.reused += n * len(seqs)
                return n, [(a[:, :, :n], b[:, :, :n]) for a, b in zip(p.keys, p.values, strict=True)]
        rows = [s.ids for s in seqs]
        if self.recent is not None and self.recent[0] is loaded and self.recent[1] == route:
            rows.append(self.recent[2])
        n = min(common_start(rows), room) if len(rows) > 1 else 0
        if n < MIN_SHARED:
            return 0, []
        start = model(input_ids=torch.tensor([seqs[0].ids[:n]], device=device), use_cache=True, logits_to_keep=1)
        layers = start.past_key_values.layers
        self.prefix = Prefix(loaded, route, seqs[0].ids[:n], [x.keys for x in layers], [x.values for x in layers])
        self.reused += n * (len(seqs) - 1)
        return n, list(zip(self.prefix.keys, self.prefix.values, strict=True))

    def _decode(self, batch: PaddedBatch) -> None:
        try:
            with self.context(batch.seqs[0].loaded, batch.seqs[0].route):
                logits = batch.step(batch.seqs[0].loaded.model).cpu()
        except Exception as e:
            for seq in batch.seqs:
                self._end(seq, "error", e)
            batch.keep([])
            return
        batch.keep([i for i, seq in enumerate(batch.seqs) if self._take(seq, seq.pick(logits[i]))])

    def _take(self, seq: Sequence, token: int) -> bool:
        """Hand `token` to the sequence's reader; whether it goes on (not ended, not cancelled, room left)."""
        if seq.cancel.is_set():
            return self._end(seq, "cancelled")
        if token in seq.eos:
            return self._end(seq, "stop")
        seq.produced += 1
        seq.last = token
        seq.out.put(token)
        if seq.produced >= seq.max_tokens:
            return self._end(seq, "length")
        return True

    @staticmethod
    def _end(seq: Sequence, reason: str, error: Exception | None = None) -> bool:
        seq.reason = reason
        seq.out.put(error)
        return False
