"""What `online-eval` streams and scores: facts about a user with probes, and chit-chat turns between them.

A facts file is JSON (a list) or JSONL, one object per fact:

    {"statement": "My sister's name is Oriel.",
     "probes": [{"question": "What do people call my sister?", "keys": ["Oriel"]}],
     "inverse": [{"question": "Who is Oriel?", "keys": ["sister"]}]}

A probe passes when the greedy answer contains any of its keys (case and punctuation ignored). Probes are never
trained: they are the paraphrases that measure generalisation. The built-in set is 16 invented facts (names and
places no model has seen), each with two paraphrased probes and one inverse probe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data.file import jsonl_lines
from ..errors import UserError


@dataclass(frozen=True)
class Probe:
    question: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class FactProbes:
    statement: str
    probes: tuple[Probe, ...]
    inverse: tuple[Probe, ...] = ()


def _f(statement: str, probes: list[tuple[str, str]], inverse: list[tuple[str, str]]) -> FactProbes:
    return FactProbes(statement, tuple(Probe(q, tuple(k.split("|"))) for q, k in probes),
                      tuple(Probe(q, tuple(k.split("|"))) for q, k in inverse))


BUILTIN_FACTS: tuple[FactProbes, ...] = (
    _f("My sister's name is Oriel.", [("What do people call my sister?", "Oriel"),
                                      ("Can you tell me my sister's name?", "Oriel")], [("Who is Oriel?", "sister")]),
    _f("My manager is Priya Velloso.", [("Who do I work under?", "Priya|Velloso"),
                                        ("What is the name of my manager?", "Priya|Velloso")],
       [("Who is Priya Velloso?", "manager|boss")]),
    _f("My name is Corwin.", [("Do you know my name?", "Corwin"), ("Who am I?", "Corwin")],
       [("Who is Corwin?", "you")]),
    _f("I live in Marrowick.", [("In which town do I live?", "Marrowick"), ("What town is my home?", "Marrowick")],
       [("Who lives in Marrowick?", "you")]),
    _f("I work at Quillfeather Labs.", [("What company employs me?", "Quillfeather"),
                                        ("Where is my workplace?", "Quillfeather")],
       [("Who works at Quillfeather Labs?", "you")]),
    _f("I was born in Eskerfield.", [("What is my hometown?", "Eskerfield"), ("In what town was I born?", "Eskerfield")],
       [("Who was born in Eskerfield?", "you")]),
    _f("My dog's name is Biscotti.", [("What do I call my dog?", "Biscotti"), ("Tell me the name of my dog.", "Biscotti")],
       [("Who is Biscotti?", "dog")]),
    _f("My favourite band is The Velvet Orrery.", [("Which band do I love most?", "Velvet Orrery"),
                                                   ("What band is my favourite?", "Velvet Orrery")],
       [("Who likes The Velvet Orrery best?", "you")]),
    _f("My birthday is on March 14.", [("What's the date of my birthday?", "March 14|14 March"),
                                       ("When do I celebrate my birthday?", "March 14|14 March")],
       [("Whose birthday is on March 14?", "your")]),
    _f("My locker code is 4827.", [("Which code opens my locker?", "4827"), ("What's the code for my locker?", "4827")],
       [("What is 4827?", "locker")]),
    _f("I am allergic to hazelnuts.", [("Which food am I allergic to?", "hazelnut"),
                                       ("What gives me an allergic reaction?", "hazelnut")],
       [("Who is allergic to hazelnuts?", "you")]),
    _f("My best friend is Tamsin Rook.", [("Who is my closest friend?", "Tamsin|Rook"),
                                          ("What's the name of my closest friend?", "Tamsin|Rook")],
       [("Who is Tamsin Rook?", "friend")]),
    _f("My wifi password is larkspur77.", [("What's the password for my wifi?", "larkspur77"),
                                           ("Which password does my wifi use?", "larkspur77")],
       [("What is larkspur77?", "password|wifi")]),
    _f("I work as a glassblower.", [("What is my occupation?", "glassblower"),
                                    ("What kind of work do I do?", "glassblower")],
       [("Who works as a glassblower?", "you")]),
    _f("My interview is on June 3.", [("When do I have my interview?", "June 3|3 June"),
                                      ("When is my job interview?", "June 3|3 June")],
       [("What is on June 3?", "interview")]),
    _f("My cat is named Pixel.", [("What do I call my cat?", "Pixel"), ("What's the name of my cat?", "Pixel")],
       [("Who is Pixel?", "cat")]),
)

CHITCHAT: tuple[str, ...] = (
    "How are you today?", "Thanks, that helps.", "I had a long day.", "Can you suggest a quick lunch idea?",
    "That sounds good.", "Tell me something interesting about octopuses.", "Okay, thank you!",
    "What is a good way to relax in the evening?", "Nice, I will try that.", "Could you give me a short poem about rain?",
    "Haha, I like it.", "What should I read next?",
)


def _probes(value, where: str) -> tuple[Probe, ...]:
    if not isinstance(value, list):
        raise UserError(f"{where}: must be a list of {{\"question\": str, \"keys\": [str]}}")
    out = []
    for i, p in enumerate(value):
        ok = isinstance(p, dict) and isinstance(p.get("question"), str) and p["question"].strip() and \
            isinstance(p.get("keys"), list) and p["keys"] and all(isinstance(k, str) and k.strip() for k in p["keys"])
        if not ok or set(p) - {"question", "keys"}:
            raise UserError(f"{where}[{i}]: expected {{\"question\": str, \"keys\": [non-empty str, ...]}}, got "
                            f"{json.dumps(p)[:80]}")
        out.append(Probe(p["question"].strip(), tuple(k.strip() for k in p["keys"])))
    return tuple(out)


def load_facts(path: str | Path) -> list[FactProbes]:
    """Read a facts file (module docstring); a bad record is a UserError naming the line and field."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"facts file {path} not found; pass a JSON or JSONL file (see `forgetlab online-eval --help`)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    try:
        records = json.loads(text) if text.lstrip().startswith("[") else \
            [json.loads(line) if line.strip() else None for line in jsonl_lines(text)]
    except json.JSONDecodeError as e:
        raise UserError(f"{path} line {e.lineno}: not valid JSON ({e.msg})") from None
    out = []
    for n, r in enumerate(records, 1):
        if r is None:
            continue
        where = f"{path} record {n}"
        if not isinstance(r, dict) or not isinstance(r.get("statement"), str) or not r["statement"].strip():
            raise UserError(f"{where}: field 'statement' must be a non-empty string")
        extra = set(r) - {"statement", "probes", "inverse"}
        if extra:
            raise UserError(f"{where}: unknown field '{sorted(extra)[0]}'; fields are statement, probes, inverse")
        out.append(FactProbes(r["statement"].strip(), _probes(r.get("probes", []), f"{where} probes"),
                              _probes(r.get("inverse", []), f"{where} inverse")))
    if not out:
        raise UserError(f"{path} holds no facts; add records like {{\"statement\": \"My name is Ana.\", \"probes\": [...]}}")
    return out
