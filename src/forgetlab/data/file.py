"""The user's own data: a JSON array or JSONL file of records, all of one kind.

- MCQ:         {"question": str, "options": [str, ...] (2-10), "answer": index or letter}
- instruction: {"instruction": str, "input": str (optional), "response": str}  ("output" works for "response")
- chat:        {"messages": [{"role": "user", "content": ...}, ..., {"role": "assistant", "content": ...}]}
MCQ tasks are scored by letter accuracy; the others by greedy generation (normalised exact match, contains).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import DataConfig
from ..errors import UserError
from .records import LETTERS, Example, MCQItem, Task, mcq_task, qa_task, user


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text. Only \n (and \r\n) end a line: str.splitlines() also splits at U+2028, U+0085
    and the like, which JSON strings may hold as they are."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_records(path: Path, fix: str = "check the path") -> list[tuple[str, dict]]:
    """[(where, record)]: 'line N' for JSONL, 'record N' for a JSON array (1-based). `fix` ends a missing file's error."""
    if not path.is_file():
        raise UserError(f"data file {path} not found; {fix}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path} line {e.lineno}: not valid JSON ({e.msg}); fix the syntax") from None
        rows = [(f"record {i}", r) for i, r in enumerate(data, 1)]
    else:
        rows = []
        for i, line in enumerate(jsonl_lines(text), 1):
            if not line.strip():
                continue
            try:
                rows.append((f"line {i}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise UserError(f"{path} line {i}: not valid JSON ({e.msg}); one JSON object per line") from None
    if not rows:
        raise UserError(f"{path}: no records; add JSON objects (see the README for the formats)")
    for where, r in rows:
        if not isinstance(r, dict):
            raise UserError(f"{path} {where}: expected a JSON object, found {type(r).__name__}")
    return rows


def _text(path: Path, where: str, r: dict, key: str) -> str:
    v = r.get(key)
    if not isinstance(v, str) or not v.strip():
        raise UserError(f"{path} {where}: field '{key}' must be a non-empty string")
    return v


def parse_mcq(path: Path, where: str, r: dict) -> MCQItem:
    question = _text(path, where, r, "question")
    options = r.get("options")
    if not isinstance(options, list) or not 2 <= len(options) <= len(LETTERS) or \
            not all(isinstance(o, str) and o.strip() for o in options):
        raise UserError(f"{path} {where}: field 'options' must be a list of 2 to 10 non-empty strings")
    answer = r.get("answer")
    if isinstance(answer, str) and len(answer) == 1 and answer.upper() in LETTERS[: len(options)]:
        answer = LETTERS.index(answer.upper())
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(options):
        raise UserError(f"{path} {where}: field 'answer' must be an option index 0..{len(options) - 1} or a letter")
    return MCQItem(question, tuple(options), answer, {"source": where})


def parse_example(path: Path, where: str, r: dict) -> Example:
    """An instruction/response or chat record as an Example."""
    if "messages" in r:
        msgs = r["messages"]
        if not isinstance(msgs, list) or len(msgs) < 2 or not all(
                isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") in ("system", "user", "assistant")
                for m in msgs):
            raise UserError(f"{path} {where}: field 'messages' must be a list of {{role, content}} with at least 2 turns")
        if msgs[-1]["role"] != "assistant":
            raise UserError(f"{path} {where}: field 'messages' must end with an assistant turn (the answer to learn)")
        prompt = tuple({"role": m["role"], "content": m["content"]} for m in msgs[:-1])
        return Example(prompt, msgs[-1]["content"], {"source": where})
    instruction = _text(path, where, r, "instruction")
    key = "output" if "output" in r and "response" not in r else "response"
    response = _text(path, where, r, key)
    extra = r.get("input")
    if extra is not None and not isinstance(extra, str):
        raise UserError(f"{path} {where}: field 'input' must be a string")
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    return Example(user(prompt), response, {"source": where})


def load(name: str, cfg: DataConfig) -> Task:
    """The user's file as a task (MCQ or instruction/response), split into seen and held-out records."""
    path = Path(name).expanduser()
    rows = read_records(path, "check the path after 'file:'")
    is_mcq = "options" in rows[0][1]
    for where, r in rows:
        if ("options" in r) != is_mcq:
            raise UserError(f"{path} {where}: mixes MCQ and instruction records; keep one kind per file")
    if len(rows) < 2:
        raise UserError(f"{path}: only one record; a task needs at least 2 (one is held out)")
    if is_mcq:
        return mcq_task(f"file:{name}", [parse_mcq(path, w, r) for w, r in rows], cfg.holdout, cfg.seed)
    return qa_task(f"file:{name}", [parse_example(path, w, r) for w, r in rows], cfg.holdout, cfg.seed)
