"""Task sources: facts, MMLU from a local directory, the user's files; and their bad-input errors."""

import json

import pytest

from forgetlab.config import DataConfig
from forgetlab.data import load_task
from forgetlab.data.facts import DOMAINS
from forgetlab.errors import UserError


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_facts_domain(domain):
    task = load_task(f"facts:{domain}", DataConfig())
    again = load_task(f"facts:{domain}", DataConfig())
    assert task.train == again.train, "facts must be deterministic"
    n_facts = 8 * 3
    assert len(task.mcq["held_out"]) == len(task.qa["held_out"]) == n_facts
    assert len(task.mcq["seen"]) == 2 * n_facts  # one MCQ per training question form
    attr_values = {a.name: set(a.values) for a in DOMAINS[domain].attributes}
    trained_prompts = {ex.messages[-1]["content"] for ex in task.train}
    for item in task.mcq["seen"] + task.mcq["held_out"]:
        assert len(item.options) == 4 and len(set(item.options)) == 4
        assert set(item.options) <= attr_values[item.meta["attribute"]], "distractors from the same attribute"
    for held in task.mcq["held_out"]:
        seen = [it for it in task.mcq["seen"] if it.meta["fact_id"] == held.meta["fact_id"]]
        assert len(seen) == 2 and all(it.options[it.answer] == held.options[held.answer] for it in seen)
        assert held.question not in trained_prompts, "held-out paraphrases are never trained"
        assert all(any(it.question in p for p in trained_prompts) for it in seen)


def test_facts_seed_and_size_change_the_world():
    a = load_task("facts:people", DataConfig())
    b = load_task("facts:people", DataConfig(facts={"seed": 1}))
    c = load_task("facts:people", DataConfig(facts={"entities": 3}))
    assert a.train != b.train
    assert len(c.mcq["held_out"]) == 9


def test_domains_do_not_share_entities():
    names = [{it.meta["entity"] for it in load_task(f"facts:{d}", DataConfig()).mcq["seen"]} for d in DOMAINS]
    assert not (names[0] & names[1]) and not (names[1] & names[2]) and not (names[0] & names[2])


def write_mmlu(root, subject, n):
    for split in ("dev", "val", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        rows = [f'"Q{split}{i}?",a{i},b{i},c{i},d{i},{"ABCD"[i % 4]}' for i in range(n)]
        (root / split / f"{subject}_{split}.csv").write_text("\n".join(rows) + "\n")


def test_mmlu_local_dir(tmp_path):
    write_mmlu(tmp_path, "astronomy", 10)
    cfg = DataConfig(mmlu={"dir": str(tmp_path)}, holdout=0.3)
    task = load_task("mmlu:astronomy", cfg)
    assert len(task.mcq["seen"]) == 21 and len(task.mcq["held_out"]) == 9
    assert len(task.train) == 21
    assert task.mcq["seen"][0].options[task.mcq["seen"][0].answer].startswith(("a", "b", "c", "d"))
    assert load_task("mmlu:astronomy", cfg).mcq == task.mcq


def test_mmlu_errors(tmp_path):
    write_mmlu(tmp_path, "astronomy", 4)
    cfg = DataConfig(mmlu={"dir": str(tmp_path)})
    with pytest.raises(UserError, match="subjects found: astronomy"):
        load_task("mmlu:anatomy", cfg)
    (tmp_path / "test" / "astronomy_test.csv").write_text('"Q?",a,b,c,d,A\n"Q2?",a,b,c,E\n')
    with pytest.raises(UserError, match=r"astronomy_test.csv line 2: expected 6 fields"):
        load_task("mmlu:astronomy", cfg)
    (tmp_path / "test" / "astronomy_test.csv").write_text('"Q?",a,b,c,d,Z\n')
    with pytest.raises(UserError, match=r"line 1: field 'answer'"):
        load_task("mmlu:astronomy", cfg)
    with pytest.raises(UserError, match="not found"):
        load_task("mmlu:astronomy", DataConfig(mmlu={"dir": str(tmp_path / "nope")}))


def test_file_formats(tmp_path):
    mcq = tmp_path / "mcq.jsonl"
    mcq.write_text("\n".join(json.dumps({"question": f"q{i}", "options": ["x", "y", "z"], "answer": "B"})
                             for i in range(10)))
    task = load_task(f"file:{mcq}", DataConfig())
    assert task.mcq and all(it.answer == 1 for it in task.mcq["seen"])
    inst = tmp_path / "inst.json"
    records = [{"instruction": f"say {i}", "output": f"{i}"} for i in range(5)]
    records += [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    inst.write_text(json.dumps(records))
    task = load_task(f"file:{inst}", DataConfig())
    assert not task.mcq and set(task.qa) == {"seen", "held_out"}
    assert len(task.train) + len(task.qa["held_out"]) == 6


@pytest.mark.parametrize("content,message", [
    ('{"question": "q", "options": ["a", "b"], "answer": 0}\n{"question": "q2", "options": "ab", "answer": 0}',
     r"line 2: field 'options'"),
    ('{"question": "q", "options": ["a", "b"], "answer": 5}\n{"question": "q", "options": ["a"], "answer": 0}',
     r"line 1: field 'answer'"),
    ('{"instruction": "a", "response": "b"}\n{"instruction": "c"}', r"line 2: field 'response' must be"),
    ('{"instruction": "a", "response": "b"}\nnot json', r"line 2: not valid JSON"),
    ('[{"instruction": "a", "response": "b"}, {"messages": [{"role": "user", "content": "x"}]}]',
     r"record 2: field 'messages'"),
    ('{"instruction": "a", "response": "b"}\n{"question": "q", "options": ["a", "b"], "answer": 0}',
     r"line 2: mixes MCQ"),
])
def test_file_errors_name_line_and_field(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_task(f"file:{path}", DataConfig())


def test_unknown_source_and_domain():
    with pytest.raises(UserError, match="valid sources: facts, mmlu, file"):
        load_task("wiki:cats", DataConfig())
    with pytest.raises(UserError, match="valid domains: people, elements, festivals"):
        load_task("facts:planets", DataConfig())
