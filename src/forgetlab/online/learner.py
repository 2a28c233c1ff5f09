"""The online learner: after each user turn is answered, learn from it off the response path.

    turn → facts (detector) → memory → one update per fact through `ModelHolder.update` (the loop's steps, the
    gate's check, a restore when the check fails) → every N turns a replay of the top facts, metrics, a checkpoint

The whole of an update — steps and check — runs under the holder's lock, so no answer is generated from
half-updated (or about to be restored) weights. The learned adapter (`online`) sits on top of the assistant's
active session; its state lives in `state_dir` (adapter.safetensors, state.json, memory.sqlite, metrics.jsonl).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..batching import encode
from ..config import TrainConfig
from ..data.general import retention_examples
from ..data.records import Example, user
from ..evaluate import generate_answers
from ..loop import train
from ..metrics.qa import contains
from ..model import adapter_state, add_trainable_adapter, load_adapter_state
from ..retain import build_anchors
from ..sessions.holder import ModelHolder
from .config import OnlineConfig
from .detector import detect, is_question_turn
from .memory import FactMemory, importance
from .state import LearnerState
from .update import OnlineLoss, adaptive_lr, entity_token_ids, fact_examples

ADAPTER = "online"
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


@dataclass
class TurnResult:
    turn: int
    kind: str  # "fact", "question", "chat" or "skip"
    updates: list[Update] = field(default_factory=list)
    metrics: dict | None = None


class OnlineLearner:
    """Learns from the turns of a conversation served by `holder` (see the module docstring)."""

    def __init__(self, holder: ModelHolder, cfg: OnlineConfig, state_dir: str | Path, parent: int | None = None):
        self.holder, self.cfg = holder, cfg
        self.state = LearnerState(Path(state_dir), parent)
        self.memory = FactMemory(self.state.dir / "memory.sqlite", cfg.memory)
        holder.update(self._prepare)
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, daemon=True, name="forgetlab-learner")
        self._worker.start()

    # -- set-up: the adapter, the anchors and the control questions, all from the model as it starts ---------------
    def _prepare(self, loaded) -> None:
        loaded.model = add_trainable_adapter(loaded.model, ADAPTER, self.cfg.lora)
        self.model, self.tok = loaded.model, loaded.tok
        cached = self.state.dir / "start.pt"  # computed once per state: a restart reuses them
        if cached.is_file():
            start = torch.load(cached, weights_only=False)
        else:
            controls = retention_examples()
            answers = generate_answers(self.model, self.tok, controls, self.cfg.gate.check_tokens, batch_size=64)
            start = {"anchors": build_anchors(self.model, self.tok, MAX_LENGTH, [ADAPTER], questions=True),
                     "right": [ex for ex, a in zip(controls, answers, strict=True) if contains(a, ex.target)]}
            tmp = cached.with_name(".start.pt.tmp")
            torch.save(start, tmp)
            tmp.replace(cached)
        self.anchors = start["anchors"]
        self.controls, self.locality = start["right"][:self.cfg.gate.controls], start["right"][self.cfg.gate.controls:]
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
        if result.kind == "chat" and self.cfg.update.regular and reply.strip():
            result.updates.append(self._update([Example(user(text), reply)], "chat", None, self.cfg.update.kl, turn))
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
        up = self._update(fact_examples(row, u), "fact", row, lam, turn)
        self.memory.record_update(row["id"], up.kept, bool(up.learned))
        return up

    def _replay(self, turn: int, skip: set) -> list[Update]:
        facts = [r for r in self.memory.top(self.cfg.memory.replay_facts, turn) if r["id"] not in skip]
        if not facts:
            return []
        rows = [ex for r in facts for ex in fact_examples(r, self.cfg.update)[:1]]
        return [self._update(rows, "replay", None, self.cfg.update.kl, turn)]

    def _update(self, examples, context: str, fact: dict | None, lam: float, turn: int) -> Update:
        lr = adaptive_lr(self.cfg.update, context, fact["times_seen"] if fact else 1)
        if lr == 0 or not examples:
            return Update(context, fact and fact["id"], 0, float("nan"), float("nan"), 0.0)
        return self.holder.update(lambda _: self._steps(examples, context, fact, lr, lam, turn))

    def _steps(self, examples, context: str, fact: dict | None, lr: float, lam: float, turn: int) -> Update:
        """Under the holder's lock: the loop's steps, then (for a fact) the gate's check and maybe a restore."""
        t0, u = time.perf_counter(), self.cfg.update
        before = adapter_state(self.model)
        encoded = [encode(self.tok, ex, MAX_LENGTH) for ex in examples]
        ents = entity_token_ids(self.tok, [fact["value"], *fact["entities"]]) if fact else set()
        method = OnlineLoss(u, self.anchors, lam, ents, self.tok.pad_token_id, start=turn * u.steps)
        steps = u.steps if context == "fact" else 1 if context == "chat" else self.cfg.memory.replay_steps
        tc = TrainConfig(epochs=steps, batch_size=len(encoded), lr=lr, warmup_ratio=0.0, min_lr_ratio=1.0,
                         max_length=MAX_LENGTH, seed=self.cfg.seed)
        history = train(self.model, encoded, tc, method, None, self.tok.pad_token_id, seed=self.cfg.seed + turn,
                        stop=lambda row: method.last_nll < u.stop_loss)
        up = Update(context, fact and fact["id"], len(history), history[0]["loss"], history[-1]["loss"], 0.0)
        if fact is not None:
            up.broken_answers, up.learned = self._check(fact)
            up.broken = len(up.broken_answers)
            if self.cfg.gate.enabled and up.broken > self.cfg.gate.max_broken:
                load_adapter_state(self.model, before)
                up.kept, up.learned = False, False
        up.seconds = time.perf_counter() - t0
        return up

    def _check(self, fact: dict) -> tuple[list[str], bool]:
        """(the control answers that broke, whether the fact's own first question is answered with its value)."""
        own = Example(user(fact["forms"][0][0]), fact["value"]) if fact["forms"] else None
        questions = (self.controls if self.cfg.gate.enabled else []) + ([own] if own else [])
        answers = generate_answers(self.model, self.tok, questions, self.cfg.gate.check_tokens, batch_size=64)
        broken = [f"{ex.messages[-1]['content']} -> {a}" for a, ex in zip(answers, questions, strict=True)
                  if ex is not own and not contains(a, ex.target)]
        return broken, bool(own and contains(answers[-1], own.target))

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
