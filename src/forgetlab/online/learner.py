"""The online learner: after each user turn is answered, learn from it off the response path.

    turn → facts (detector) → memory → one update per fact through `ModelHolder.update` (the loop's steps, the
    gate's check, a restore when the check fails) → every N turns a replay of the top facts, metrics, a checkpoint

The whole of an update — steps and check — runs under the holder's lock, so no answer is generated from
half-updated (or about to be restored) weights. The learned adapter (`online`) sits on top of the assistant's
active session; its state lives in `state_dir` (adapter.safetensors, state.json, memory.sqlite, metrics.jsonl).
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..batching import encode, encode_continuation
from ..below import Below
from ..config import TrainConfig
from ..config.online import OnlineConfig
from ..data.general import retention_examples
from ..data.records import Example, user
from ..evaluate import generate_answers
from ..loop import make_optimizer, train
from ..metrics.qa import contains
from ..model import adapter_off, adapter_state, add_trainable_adapter, load_adapter_state
from ..retain import build_anchors
from ..runs import atomic_file
from ..sessions.holder import ModelHolder
from .detector import detect, is_question_turn
from .edits import EditRecord
from .memory import FactMemory, importance
from .route import names, routes
from .state import ADAPTER, LearnerState
from .update import OnlineLoss, adaptive_lr, entity_token_ids, fact_examples, key_margins, key_predicted

MAX_LENGTH = 256


@dataclass
class Update:
    """What one update did: which fact (or "chat" / "replay"), steps, losses, time, and the gate's verdict."""

    kind: str
    fact_id: int | None
    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    kept: bool = True
    learned: bool | None = None
    broken: int = 0
    broken_answers: list[str] = field(default_factory=list)  # "question -> answer" of each control that broke
    retried: bool = False  # the gate's second try (gate.retry) ran


@dataclass
class TurnResult:
    turn: int
    kind: str  # "fact", "question", "chat", "edit" or "skip"
    updates: list[Update] = field(default_factory=list)
    metrics: dict | None = None


class OnlineLearner:
    """Learns from the turns of a conversation served by `holder` (see the module docstring)."""

    def __init__(self, holder: ModelHolder, cfg: OnlineConfig, state_dir: str | Path, parent: int | None = None,
                 on_prepare=None):
        self.holder, self.cfg = holder, cfg
        self.state = LearnerState(Path(state_dir), parent)  # a damaged state or memory stops us here, before any work
        self.memory = FactMemory(self.state.dir / "memory.sqlite", cfg.memory)
        if on_prepare:
            on_prepare()
        holder.update(self._prepare)
        holder.route_key = lambda text: self.routed([text])[0]  # every answer the holder generates is routed
        holder.route_context = lambda on: adapter_off(self.model, ADAPTER, off=not on)
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, daemon=True, name="forgetlab-learner")
        self._worker.start()

    # -- set-up: the adapter, the anchors and the control questions, all from the model as it starts ---------------
    def _prepare(self, loaded) -> None:
        with torch.random.fork_rng(devices=[]):  # the adapter's initialisation from `seed`, whatever ran before
            torch.manual_seed(self.cfg.seed)
            loaded.model = add_trainable_adapter(loaded.model, ADAPTER, self.cfg.lora)
        self.model, self.tok = loaded.model, loaded.tok
        self.below = Below(self.model, self.tok.pad_token_id)  # the frozen layers' states (top_layers < 1), kept
        cached = self.state.dir / "start.pt"  # computed once per state: a restart reuses them
        if cached.is_file():
            start = torch.load(cached, weights_only=False)
        if not cached.is_file() or "answers" not in start:  # (an older state kept no answers: made again)
            controls = retention_examples()
            answers = generate_answers(self.model, self.tok, controls, self.cfg.gate.check_tokens, batch_size=64)
            right = [(ex, a) for ex, a in zip(controls, answers, strict=True) if contains(a, ex.target)]
            # the gate checks the answers the start is surest of (the largest margin at the right answer): a
            # borderline answer flips with any update and would undo good ones; the rest measure locality
            margins = key_margins(self.model, self.tok, [(Example(ex.messages, a), ex.target) for ex, a in right])
            right = [r for _, r in sorted(zip(margins, right, strict=True), key=lambda mr: -mr[0])]
            start = {"anchors": build_anchors(self.model, self.tok, MAX_LENGTH, [ADAPTER], questions=True),
                     "right": [ex for ex, _ in right], "answers": [a for _, a in right]}
            atomic_file(cached, lambda tmp: torch.save(start, tmp))
        self.anchors = start["anchors"]
        n = self.cfg.gate.controls  # controls: questions the start answers right, with its answers
        self.controls, self.control_answers, self.locality = start["right"][:n], start["answers"][:n], start["right"][n:]
        self.state.restore(self.model)  # the adapter of an earlier run, if any

    # -- the queue: turns are learned one after another, in order, by one worker thread ----------------------------
    def submit(self, user_text: str, reply: str = "", turn: int | None = None) -> int:
        """Queue a turn to learn from (returns at once); its number (`turn`, when one was taken already with
        `state.next_turn()`, as the server does before it streams)."""
        turn = turn or self.state.next_turn()
        self._queue.put((turn, user_text, reply))
        return turn

    def wait(self) -> None:
        """Block until every queued turn has been learned."""
        self._queue.join()

    @property
    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def _work(self) -> None:
        while True:
            turn, text, reply = self._queue.get()
            try:
                self.learn(turn, text, reply)
            except Exception as e:  # a failed update must not kill the learner; it is recorded instead
                self.state.log_error(turn, e)
            finally:
                self._queue.task_done()

    # -- one turn ----------------------------------------------------------------------------------------------
    def learn(self, turn: int, text: str, reply: str = "") -> TurnResult:
        """Learn from one turn now (the worker calls this; online-eval calls it directly)."""
        facts = detect(text, self.cfg.detect)
        result = TurnResult(turn, "fact" if facts else "question" if is_question_turn(text, self.cfg.detect) else "chat")
        for fact in facts:
            row = self.memory.add(fact, turn)
            result.updates.append(self._fact_update(row, turn))
        if result.kind in ("chat", "question") and self.cfg.update.regular and reply.strip():
            # the regular path: a step on the model's own reply (a question's lr: update.question_multiplier, 0 = none)
            up = self._update([Example(user(text), reply)], result.kind, None, self.cfg.update.kl, turn)
            result.updates += [up] if up.steps else []
        return self._end_turn(result, turn)

    def edit(self, record: EditRecord, turn: int | None = None) -> TurnResult:
        """Apply one knowledge edit now (online-eval --edits): stored as a fact keyed by subject + relation (a
        later edit of the same key replaces it, its earlier prompts answered with the new value), then learned
        through the same fact update as a stated fact."""
        turn = turn or self.state.next_turn()
        earlier = next((r for r in self.memory.all() if r["key"] == record.key), None)
        row = self.memory.add(record.fact(earlier), turn)
        return self._end_turn(TurnResult(turn, "edit", [self._fact_update(row, turn)]), turn)

    def _end_turn(self, result: TurnResult, turn: int) -> TurnResult:
        """What follows every turn's updates: a replay every N turns, tidying, metrics, the record, a checkpoint."""
        every = self.cfg.memory.replay_every
        if every and turn % every == 0 and self.cfg.memory.replay_facts:
            result.updates += self._replay(turn, skip={u.fact_id for u in result.updates})
        self.memory.tidy(turn)
        if self.cfg.metrics_every and turn % self.cfg.metrics_every == 0:
            result.metrics = self.holder.update(lambda _: self.measure(turn))
        self.state.record(result, self.memory)
        if turn % self.cfg.checkpoint_every == 0:
            self.holder.update(lambda _: self.state.checkpoint(self.model, turn))
        return result

    def _fact_update(self, row: dict, turn: int) -> Update:
        u = self.cfg.update
        lam = u.kl_important if importance(row, turn, self.cfg.memory) >= 2 else u.kl_fact
        others = self._rehearsal(row, turn)
        rows = fact_examples(row, u) + [self._one_form(r, turn) for r in others]
        up = self._update(rows, "fact", row, lam, turn, values=[r["value"] for r in others])
        self.memory.record_update(row["id"], up.kept, bool(up.learned))
        return up

    def _replay(self, turn: int, skip: set) -> list[Update]:
        facts = [r for r in self.memory.top(self.cfg.memory.replay_facts, turn) if r["id"] not in skip]
        if not facts:
            return []
        rows = [self._one_form(r, turn) for r in facts]
        return [self._update(rows, "replay", None, self.cfg.update.kl, turn, values=[r["value"] for r in facts])]

    def _rehearsal(self, row: dict, turn: int) -> list[dict]:
        """Up to `update.rehearse` other stored facts: a share (`update.rehearse_recent`) the most recently stored or
        restated, the rest taken in turn (round robin by id), so each comes round."""
        u = self.cfg.update
        others = [r for r in self.memory.all() if r["id"] != row["id"]]
        n = min(u.rehearse, len(others))
        recent = sorted(others, key=lambda r: (-r["last_turn"], -r["id"]))
        picked = recent[:round(n * u.rehearse_recent)]
        rest = [r for r in others if r not in picked]
        start = (turn * n) % len(rest) if rest else 0
        return picked + [rest[(start + i) % len(rest)] for i in range(n - len(picked))]

    def _one_form(self, fact: dict, turn: int) -> Example:
        """One of the fact's trained examples, a different one from turn to turn (what replay and rehearsal train)."""
        rows = fact_examples(fact, self.cfg.update)
        return rows[(turn + fact["id"]) % len(rows)]

    def _update(self, examples, context: str, fact: dict | None, lam: float, turn: int, values=()) -> Update:
        lr = adaptive_lr(self.cfg.update, context, fact["times_seen"] if fact else 1)
        if lr == 0 or not examples:
            return Update(context, fact and fact["id"], 0, float("nan"), float("nan"), 0.0)
        return self.holder.update(lambda _: self._steps(examples, context, fact, lr, lam, turn, values))

    def _steps(self, examples, context: str, fact: dict | None, lr: float, lam: float, turn: int,
               values=()) -> Update:
        """Under the holder's lock: the loop's steps, then (for a fact) the gate's check — an update that breaks a
        control is tried once more from the same start with the controls beside it (`gate.retry`) — and a restore
        when it still breaks one."""
        t0, u, gate = time.perf_counter(), self.cfg.update, self.cfg.gate
        before = adapter_state(self.model)
        steps = u.steps if context == "fact" else 1 if context in ("chat", "question") else self.cfg.memory.replay_steps
        tc = TrainConfig(epochs=steps, batch_size=len(examples), lr=lr, warmup_ratio=0.0, min_lr_ratio=1.0,
                         max_length=MAX_LENGTH, seed=self.cfg.seed, max_grad_norm=u.clip, weight_decay=u.weight_decay)
        opt = self._optimizer(tc)
        saved = copy.deepcopy(opt.state_dict()) if opt is not None and fact is not None else None
        history = self._train(examples, tc, opt, fact, lam, turn, values)
        up = Update(context, fact and fact["id"], len(history), history[0]["loss"], history[-1]["loss"], 0.0)
        if fact is not None:
            def breaks():
                return gate.enabled and len(up.broken_answers) > gate.max_broken

            def restore():
                load_adapter_state(self.model, before)
                if saved is not None:  # an undone try leaves no trace in the optimizer's moments either
                    opt.load_state_dict(copy.deepcopy(saved))

            up.broken_answers, up.learned = self._check(fact)
            if breaks() and gate.retry and self.controls:  # a second try, the controls answered as at the start
                restore()
                controls = [Example(ex.messages, a) for ex, a in zip(self.controls, self.control_answers, strict=True)]
                both = tc.model_copy(update={"batch_size": len(examples) + len(controls)})
                history = self._train(examples + controls, both, opt, fact, lam, turn, values)
                up.retried, up.steps, up.last_loss = True, up.steps + len(history), history[-1]["loss"]
                up.broken_answers, up.learned = self._check(fact)
            if breaks():
                restore()
                up.kept, up.learned = False, False
            up.broken = len(up.broken_answers)
        up.seconds = time.perf_counter() - t0
        return up

    def _train(self, examples, tc: TrainConfig, opt, fact: dict | None, lam: float, turn: int, values) -> list[dict]:
        """The loop's steps on `examples` (the online loss, early stop at `update.stop_loss`); the history."""
        u = self.cfg.update
        encoded = [self._encode(ex) for ex in examples]
        ents = entity_token_ids(self.tok, [*([fact["value"], *fact["entities"]] if fact else []), *values])
        method = OnlineLoss(u, self.anchors, lam, ents, self.tok.pad_token_id, start=turn * u.steps,
                            starting=lambda: adapter_off(self.model, ADAPTER), below=self.below)
        return train(self.model, encoded, tc, method, None, self.tok.pad_token_id, seed=self.cfg.seed + turn,
                     stop=lambda row: method.last_nll < u.stop_loss, optimizer=opt)

    def _encode(self, ex: Example):
        """An update's row: plain text (`prompt answer`) for an edit's plain form, else through the chat template."""
        if ex.meta.get("plain"):
            return encode_continuation(self.tok, ex.messages[-1]["content"], " " + ex.target, MAX_LENGTH)
        return encode(self.tok, ex, MAX_LENGTH)

    def _optimizer(self, tc: TrainConfig):
        """The persistent optimizer (update.persistent_optimizer), made on first use (or loaded from the state's
        last checkpoint); None: each update makes a fresh one."""
        if not self.cfg.update.persistent_optimizer:
            return None
        if self.state.optimizer is None:
            self.state.optimizer = make_optimizer([p for p in self.model.parameters() if p.requires_grad], tc)
            self.state.restore_optimizer()
        return self.state.optimizer

    def _check(self, fact: dict) -> tuple[list[str], bool]:
        """(the control answers that broke, whether the fact's own first question is answered with its value).

        One teacher-forced pass, no generation: a control is kept when, given its question and the starting model's
        answer so far, the model still predicts the tokens of the right answer in it ("Paris" in "The capital of
        France is Paris."); the fact counts as learned when, given its first question and the answer form so far
        ("Your sister's name is"), the model predicts the value. The end-of-stream scores generate."""
        rows = []
        if self.cfg.gate.enabled:
            rows = [(Example(ex.messages, a), ex.target)
                    for ex, a in zip(self.controls, self.control_answers, strict=True)]
        if fact["forms"]:
            q, a = fact["forms"][0]
            rows.append((Example(user(q), a), fact["value"]))
        if not rows:
            return [], False
        hits = key_predicted(self.model, self.tok, rows, self.below)
        broken = [f"{ex.messages[-1]['content']} -> no longer '{key}'"
                  for (ex, key), ok in zip(rows[:len(rows) - bool(fact["forms"])], hits, strict=False) if not ok]
        return broken, bool(fact["forms"]) and hits[-1]

    # -- the router: which prompts the learned adapter answers (online/route.py) --------------------------------
    def routed(self, texts: list[str]) -> list[bool]:
        """Per prompt: does the learned adapter answer it (`route: always`, or the prompt is about the user or
        names a stored fact)?"""
        if self.cfg.route == "always":
            return [True] * len(texts)
        known = names(self.memory.all())
        return [routes(t, known) for t in texts]

    def by_route(self, texts: list[str], fn) -> list:
        """`fn(indices)` → one value per index, called with the adapter on for the routed prompts among `texts` and
        off for the others; the values come back in `texts`' order. Call under the holder's lock."""
        out: list = [None] * len(texts)
        flags = self.routed(texts)
        for on in (True, False):
            idx = [i for i, f in enumerate(flags) if f is on]
            if idx:
                with adapter_off(self.model, ADAPTER, off=not on):
                    for i, value in zip(idx, fn(idx), strict=True):
                        out[i] = value
        return out

    def generate(self, examples: list[Example], max_new_tokens: int) -> list[str]:
        """Greedy answers, each prompt answered as the router says. Call under the holder's lock."""
        return self.by_route([ex.messages[-1]["content"] for ex in examples],
                             lambda idx: generate_answers(self.model, self.tok, [examples[i] for i in idx],
                                                          max_new_tokens, batch_size=64))

    def measure(self, turn: int) -> dict:
        """Stability, plasticity and forgetting now (see `online/measure.py`)."""
        from .measure import measure

        return measure(self, turn)

    # -- user actions ------------------------------------------------------------------------------------------
    def forget(self, fid: int) -> bool:
        """Remove a fact from the memory (what was already learned stays in the adapter until /reset)."""
        return self.memory.remove(fid)

    def reset(self) -> None:
        """Back to the assistant as it started: the adapter zeroed, the memory and the state emptied."""
        self.wait()

        self.holder.update(lambda _: self.state.clear(self.model))
        self.memory.clear()

    def status(self) -> dict:
        facts = self.memory.all()
        return {"queue": self.pending, "turns": self.state.turn, "turns_learned": self.state.learned_turns,
                "facts_stored": len(facts), "facts_learned": sum(f["learned"] for f in facts),
                "updates_rejected": self.state.rejected, "last_metrics": self.state.last_metrics,
                "errors": self.state.errors[-3:]}
