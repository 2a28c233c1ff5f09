"""Property-based tests (hypothesis) for what reads user input: every record reader and the config parser either
return what was written or raise one UserError — never another exception, whatever the bytes or values."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgetlab.config import SequentialConfig, SessionConfig, UnlearnConfig, build_config, parse_set
from forgetlab.data.file import load as load_file_task
from forgetlab.data.file import read_records
from forgetlab.data.mmlu import read_csv
from forgetlab.data.unlearn import read_facts
from forgetlab.errors import UserError
from forgetlab.online.probes import load_facts
from forgetlab.sessions.data import load_examples

from .conftest import FEW_FACTS

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
KEYS = ["instruction", "response", "output", "input", "messages", "question", "options", "choices", "answer", "text",
        "correct_answer", "wrong_answers", "role", "content"]
# Records built from the keys the readers look at, with values of any JSON type: near-misses of every format.
RECORD = st.dictionaries(st.sampled_from(KEYS), JSON | st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "x"]), "content": JSON}), max_size=3), max_size=5)


def write(data: bytes, suffix: str = ".jsonl") -> Path:
    f = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    f.write(data)
    f.close()
    return Path(f.name)


def readers(path: Path):
    yield lambda: read_records(path)
    yield lambda: load_examples(path)
    yield lambda: read_facts(str(path))
    yield lambda: load_facts(path)
    yield lambda: load_file_task(str(path), FEW_FACTS)


def only_user_errors(path: Path) -> None:
    for read in readers(path):
        try:
            read()
        except UserError as e:
            assert str(e) and "\n" not in str(e)
    path.unlink()


@SETTINGS
@given(data=st.binary(max_size=300))
def test_any_bytes_are_read_or_refused_in_one_line(data):
    only_user_errors(write(data))


@SETTINGS
@given(records=st.lists(RECORD, max_size=4), as_array=st.booleans())
def test_near_miss_records_are_read_or_refused_in_one_line(records, as_array):
    text = json.dumps(records) if as_array else "\n".join(json.dumps(r) for r in records)
    only_user_errors(write(text.encode()))


@SETTINGS
@given(rows=st.lists(st.lists(st.text(max_size=6), max_size=7), max_size=4))
def test_any_mmlu_csv_is_read_or_refused_in_one_line(rows):
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    path = write(buf.getvalue().encode(), ".csv")
    try:
        items = read_csv(path, "subject")
        assert len(items) == len(rows) and all(0 <= it.answer < 4 for it in items)
    except UserError as e:
        assert "\n" not in str(e)
    path.unlink()


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(lambda s: s.strip())


@SETTINGS
@given(pairs=st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=5), as_array=st.booleans())
def test_instruction_records_come_back_as_written(pairs, as_array):
    records = [{"instruction": q, "response": a} for q, a in pairs]
    text = json.dumps(records, ensure_ascii=False) if as_array else \
        "\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    path = write(text.encode("utf-8"))
    examples = load_examples(path)
    path.unlink()
    assert [(ex.messages[-1]["content"], ex.target) for ex in examples] == pairs


@SETTINGS
@given(key=st.text(max_size=20), value=st.text(max_size=20))
@pytest.mark.parametrize("cls", [SequentialConfig, SessionConfig, UnlearnConfig])
def test_any_set_is_a_config_or_one_user_error(cls, key, value):
    try:
        build_config(cls, {}, {}, [f"{key}={value}"], source="--set")
    except UserError as e:
        assert str(e) and "\n" not in str(e)


@SETTINGS
@given(data=st.dictionaries(st.sampled_from(["model", "lora", "train", "data", "tasks", "run", "strategy", "nope"]),
                            JSON, max_size=4))
def test_any_yaml_shape_is_a_config_or_one_user_error(data):
    try:
        build_config(SequentialConfig, data, {}, [], source="config.yaml")
    except UserError as e:
        assert str(e) and "\n" not in str(e)


@SETTINGS
@given(value=st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.booleans())
def test_set_values_parse_as_yaml_scalars(value):
    text = json.dumps(value)
    assert parse_set(f"train.lr={text}") == ("train.lr", value)
