"""The served model, kept apart from the HTTP layer: chat, the server and online learning all use it.

`ModelHolder` owns the current model and generates one request at a time (a lock queues the rest), or, once
`batch(n)` is called (the server does), decodes up to n requests together, each joining the running batch at its
next step (`batch.py`). `update(fn)` changes the weights with generation locked out, so no answer is ever generated
from half-updated weights (the online learner trains through it). `reload()` builds the new
model first and then swaps the reference; a request in flight keeps the model it started with, so it finishes on
the old session.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..batching import prompt_ids
from ..data.records import SYSTEM
from ..evaluate import eos_ids
from .answers import StreamTidier


class RequestError(ValueError):
    """A request the model cannot serve (too long, bad sampling values); `param` names the field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass
class Loaded:
    """A model ready to answer: which assistant and session it is."""

    model: object
    tok: object
    assistant: str
    session: int | None
    loaded_at: float
    adapter: str | None = None  # on a shared base (`shared.py`): the adapter that makes the model this assistant


@dataclass
class Completion:
    text: str  # the answer, tidied (what was streamed, in full)
    finish_reason: str  # "stop" (end of answer, a stop string or a made-up next turn) or "length"
    prompt_tokens: int
    completion_tokens: int
    session: int | None
    raw: str = ""  # what the model generated, up to a stop string or a made-up turn, before tidying


def with_system(messages: list[dict]) -> list[dict]:
    """Sessions train with a short system turn; a conversation without one gets the same."""
    if messages and messages[0]["role"] == "system":
        return list(messages)
    return [{"role": "system", "content": SYSTEM}, *messages]


def use_adapter(loaded: Loaded) -> None:
    """Make `loaded`'s adapter the active one on its shared model (`shared.py`); nothing when it has none or it is
    active already."""
    if loaded.adapter is None or getattr(loaded.model, "_forgetlab_active", None) == loaded.adapter:
        return
    loaded.model.base_model.set_adapter(loaded.adapter, inference_mode=True)
    loaded.model._forgetlab_active = loaded.adapter


def _pick(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> int:
    """Greedy at temperature 0; otherwise sample from the smallest set of tokens whose probability reaches top_p."""
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < top_p  # always keeps the most likely token
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=gen))


class ModelHolder:
    """Owns the current model; `stream`/`complete` generate, `reload` switches to what `load` returns now."""

    def __init__(self, load: Callable[[], Loaded], lock: threading.Lock | None = None):
        """`lock`: one shared with other holders whose models share weights (a shared base), else a new one."""
        self._load = load
        self._current = load()
        self._generate_lock = lock or threading.Lock()
        self._reload_lock = threading.Lock()
        self.route_key: Callable[[str], object] | None = None
        """Set by the online learner: per request (its last user message), which way the router sends it ..."""
        self.route_context: Callable[[object], contextlib.AbstractContextManager] = lambda key: contextlib.nullcontext()
        """... and the context that answers that way (requests of one route share a batch)."""
        self._scheduler = None

    def batch(self, max_batch: int, scheduler=None):
        """Decode concurrent requests together, up to `max_batch` at a time (1: one at a time, as before); with
        `scheduler`, in that one (holders on a shared base decode in one). Returns the scheduler (None at 1)."""
        if max_batch > 1 and self._scheduler is None:
            from .batch import Scheduler

            self._scheduler = scheduler or Scheduler(self._generate_lock, self._answering, max_batch)
        return self._scheduler

    @contextlib.contextmanager
    def _answering(self, loaded: Loaded, route):
        """The model as `loaded` answers with it: its adapter active on a shared base, the router's `route` taken."""
        use_adapter(loaded)
        with self.route_context(route):
            yield

    @property
    def current(self) -> Loaded:
        return self._current

    def reload(self) -> Loaded:
        with self._reload_lock:
            fresh = self._load()
            self._current = fresh  # requests already running keep their reference to the old one
            return fresh

    def update(self, fn: Callable[[Loaded], object]) -> object:
        """Run `fn(current)` with generation locked out (answers wait; none is generated meanwhile); return its result.
        `fn` may change the model's weights in place or put a new model in `current.model`."""
        with self._scheduler.update() if self._scheduler else self._generate_lock:
            return fn(self._current)

    def context_length(self, loaded: Loaded) -> int:
        return int(getattr(loaded.model.config, "max_position_embeddings", 2048))

    def stream(self, messages: list[dict], max_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
               stop: list[str] | None = None, seed: int | None = None, loaded: Loaded | None = None,
               cancel: threading.Event | None = None) -> Iterator[str | Completion]:
        """Yield the answer's pieces as they are settled (whole sentences, tidied: `StreamTidier`), then the
        `Completion` (the whole tidied text, finish reason, token counts). Raises RequestError before anything is
        generated when the request cannot be served. `loaded` pins the model (default: the current one, taken now);
        `cancel`, once set, ends generation at the next token (finish reason "cancelled")."""
        loaded = loaded or self._current
        stops = [s for s in (stop or []) if s]
        ids = prompt_ids(loaded.tok, with_system(messages))
        room = self.context_length(loaded) - len(ids)
        if room < 1:
            raise RequestError(f"the conversation is {len(ids)} tokens, the model's context is "
                               f"{self.context_length(loaded)}; shorten the messages", "messages")
        if not 0 <= temperature <= 2 or not 0 < top_p <= 1:
            raise RequestError("temperature must be in [0, 2] and top_p in (0, 1]", "temperature")
        last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        gen = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
        pick = lambda logits: _pick(logits, temperature, top_p, gen)
        route = self.route_key(last) if self.route_key else None
        end = {"reason": "length"}
        source = self._batched_tokens if self._scheduler else self._serial_tokens
        tokens = source(loaded, ids, min(max_tokens, room), pick, route, cancel, end)
        return self._answer(loaded, ids, tokens, stops, end)

    def _answer(self, loaded: Loaded, ids: list[int], tokens: Iterator[int], stops: list[str],
                end: dict) -> Iterator[str | Completion]:
        """The answer's settled pieces as `tokens` come (tidied: `StreamTidier`), then the Completion; a stop string
        or a made-up turn ends it early (the token source is closed, freeing the model or the batch row)."""
        out: list[int] = []
        tidier = StreamTidier(stops)
        try:
            for token in tokens:
                out.append(token)
                piece = tidier.feed(loaded.tok.decode(out, skip_special_tokens=True))
                if piece:
                    yield piece
                if tidier.stopped:
                    end["reason"] = "stop"
                    break
        finally:
            tokens.close()
        rest = tidier.finish(truncated=end["reason"] == "length")
        if rest:
            yield rest
        yield Completion(tidier.final, end["reason"], len(ids), len(out), loaded.session, tidier.raw)

    def _serial_tokens(self, loaded: Loaded, ids: list[int], max_tokens: int, pick, route,
                       cancel: threading.Event | None, end: dict) -> Iterator[int]:
        """The answer's tokens, decoded alone with the model held (`end["reason"]` says why it ended)."""
        model = loaded.model
        device = next(model.parameters()).device
        eos = eos_ids(model, loaded.tok)
        with self._generate_lock, torch.no_grad(), self._answering(loaded, route):
            x, past = torch.tensor([ids], device=device), None
            for _ in range(max_tokens):
                if cancel is not None and cancel.is_set():
                    end["reason"] = "cancelled"
                    return
                step = model(input_ids=x, past_key_values=past, use_cache=True, logits_to_keep=1)
                past = step.past_key_values
                nxt = pick(step.logits[0, -1].cpu())
                if nxt in eos:
                    end["reason"] = "stop"
                    return
                yield nxt
                x = torch.tensor([[nxt]], device=device)

    def _batched_tokens(self, loaded: Loaded, ids: list[int], max_tokens: int, pick, route,
                        cancel: threading.Event | None, end: dict) -> Iterator[int]:
        """The answer's tokens, decoded by the scheduler in a batch with whatever else is being answered."""
        from .batch import Sequence

        seq = Sequence(loaded, ids, max_tokens, pick, set(eos_ids(loaded.model, loaded.tok)), route,
                       loaded.tok.pad_token_id or 0, cancel or threading.Event())
        self._scheduler.submit(seq)
        try:
            while (item := seq.out.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
            end["reason"] = seq.reason
        finally:
            seq.cancel.set()  # a reader that stops early (a stop string, a hang-up) frees its row at the next step

    def complete(self, messages: list[dict], **kw) -> Completion:
        """The whole answer, tidied (a made-up next turn dropped; an unfinished last sentence dropped when the
        token limit cut it), URLs, e-mail addresses and code spans intact: the streamed answer, in one piece."""
        done = None
        for piece in self.stream(messages, **kw):
            if isinstance(piece, Completion):
                done = piece
        return done


