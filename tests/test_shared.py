"""Several assistants on one shared base (sessions/shared.py): each assistant's session chain is one adapter on one
copy of the base weights; answers equal those of the assistant's own merged model, also when requests of both
assistants arrive together, and after a reload of one of them."""

from __future__ import annotations

import threading
from pathlib import Path

from forgetlab.config import ModelConfig, SessionConfig
from forgetlab.recipes.session import train_session
from forgetlab.sessions.holder import ModelHolder
from forgetlab.sessions.manage import loader, open_shared, rollback
from forgetlab.sessions.store import Store

EXAMPLES = Path(__file__).parents[1] / "examples" / "sessions"
QUESTIONS = ["When is move-in day?", "Who chairs the department?", "Where do I pick up my keys?", "Hello"]


def ask(holder, q: str) -> str:
    return holder.complete([{"role": "user", "content": q}], max_tokens=10).raw


def test_assistants_on_one_shared_base_answer_as_each_merged_alone(tiny_dir, tmp_path):
    cfg = SessionConfig.model_validate({"model": {"name": str(tiny_dir)}, "epochs": 1, "lr": 1e-2,
                                        "max_new_tokens": 2, "targets": ("q_proj", "v_proj")})
    a, b = Store(tmp_path, "a"), Store(tmp_path, "b")
    train_session(a, cfg, str(EXAMPLES / "cs_dept.json"))
    train_session(a, cfg, str(EXAMPLES / "housing.json"))  # a chain of two: one combined adapter
    train_session(b, cfg, str(EXAMPLES / "housing.json"))
    stores, holders = open_shared(str(tmp_path), ["a", "b"], ModelConfig(name=str(tiny_dir)), max_batch=8)
    assert holders[0].current.model is holders[1].current.model  # one copy of the weights
    alone = {s.name: ModelHolder(loader(s)) for s in stores}  # each merged into its own model
    want = {(s.name, q): ask(alone[s.name], q) for s in stores for q in QUESTIONS}
    assert any(want[("a", q)] != want[("b", q)] for q in QUESTIONS)  # the adapters make them differ

    got = {}

    def run(h, q):
        got[(h.current.assistant, q)] = ask(h, q)

    threads = [threading.Thread(target=run, args=(h, q)) for q in QUESTIONS for h in holders]  # interleaved
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want

    rollback(a, 1)
    for _ in range(3):  # each reload loads a's new chain as another adapter; only the last two are kept
        holders[0].reload()
    assert holders[0].current.session == 1 and holders[1].current.session == 1
    names = list(holders[0].current.model.peft_config)
    assert sum(n.startswith("a_") for n in names) == 2 and sum(n.startswith("b_") for n in names) == 1
    assert [ask(holders[0], q) for q in QUESTIONS] == [ask(ModelHolder(loader(a)), q) for q in QUESTIONS]
    assert [ask(holders[1], q) for q in QUESTIONS] == [want[("b", q)] for q in QUESTIONS]
