"""Knowledge edits as the online learner's input: zsRE and CounterFact records read as they are, each one a fact.

zsRE (MEND / ROME / EasyEdit layout)::

    {"subject": "Watts Humphrey", "src": "What university did Watts Humphrey attend?", "alt": "University of Michigan",
     "rephrase": "What university did Watts Humphrey take part in?", "loc": "nq question: who sang ...",
     "loc_ans": "Billy Idol", "answers": ["Illinois Institute of Technology"]}

CounterFact (ROME's layout)::

    {"requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
                           "target_new": {"str": "English"}, "target_true": {"str": "French"}, "relation_id": "P103"},
     "paraphrase_prompts": ["..."], "neighborhood_prompts": ["..."]}

An edit becomes a fact of the memory keyed by subject + relation (CounterFact's relation_id; zsRE has none, so its
relation is "edit"): a later edit of the same subject replaces the earlier one, and trains the earlier prompts with
the new answer too, so the later value wins wherever the subject is asked about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..batching import IGNORE, Encoded
from ..data.file import read_records
from ..errors import UserError
from .detector import Fact

EDIT = "edit"
"""The pattern name of a fact that came from an edit record (trained as its prompts, chat and plain)."""


@dataclass(frozen=True)
class EditRecord:
    subject: str
    prompt: str
    target: str
    rephrases: tuple[str, ...] = ()
    locality: tuple[tuple[str, str], ...] = ()  # (prompt, answer) whose prediction must not change
    truth: str | None = None
    relation: str = EDIT
    where: str = ""

    @property
    def key(self) -> str:
        return f"{self.relation}:{self.subject.lower()}"

    def fact(self, earlier: dict | None = None) -> Fact:
        """The fact this edit stores; `earlier` (the memory's row for the same key) lends its prompts, answered
        with the new value."""
        prompts = [self.prompt] + [q for q, _ in (earlier or {}).get("forms", []) if q != self.prompt]
        return Fact(self.prompt, EDIT, self.relation, self.subject, self.target, [self.target], 1.0,
                    [(q, self.target) for q in prompts])


def read_edits(path: str | Path) -> list[EditRecord]:
    """The records of a zsRE or CounterFact file (JSON list or JSONL), in order; one line naming a bad record."""
    path = Path(path).expanduser()
    fix = "pass a zsRE or CounterFact JSON / JSONL file (see `forgetlab online-eval --help`)"
    out = []
    for where, r in read_records(path, fix):
        if "requested_rewrite" in r:
            out.append(_counterfact(path, where, r))
        elif "src" in r or "alt" in r:
            out.append(_zsre(path, where, r))
        else:
            raise UserError(f"{path} {where}: neither a zsRE record (subject, src, alt, rephrase, loc, loc_ans) nor "
                            "a CounterFact one (requested_rewrite, paraphrase_prompts, neighborhood_prompts)")
    return out


def _text(path: Path, where: str, value, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{path} {where}: '{name}' must be a non-empty string")
    return value.strip()


def _texts(path: Path, where: str, value, name: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list):
        raise UserError(f"{path} {where}: '{name}' must be a string or a list of strings")
    return tuple(_text(path, where, v, name) for v in values)


def _zsre(path: Path, where: str, r: dict) -> EditRecord:
    subject, src, alt = (_text(path, where, r.get(k), k) for k in ("subject", "src", "alt"))
    if subject.lower() not in src.lower():
        raise UserError(f"{path} {where}: subject '{subject}' does not occur in src '{src}'")
    rephrases = _texts(path, where, r["rephrase"], "rephrase") if "rephrase" in r else ()
    loc = ()
    if "loc" in r or "loc_ans" in r:
        loc = ((_text(path, where, r.get("loc"), "loc"), _text(path, where, r.get("loc_ans"), "loc_ans")),)
    answers = r.get("answers")
    if answers is not None and (not isinstance(answers, list) or not all(isinstance(a, str) for a in answers)):
        raise UserError(f"{path} {where}: 'answers' must be a list of strings")
    return EditRecord(subject, src, alt, rephrases, loc, answers[0] if answers else None, EDIT, where)


def _counterfact(path: Path, where: str, r: dict) -> EditRecord:
    rw = r["requested_rewrite"]
    if not isinstance(rw, dict):
        raise UserError(f"{path} {where}: 'requested_rewrite' must be an object")
    subject = _text(path, where, rw.get("subject"), "requested_rewrite.subject")
    template = _text(path, where, rw.get("prompt"), "requested_rewrite.prompt")
    if "{}" not in template:
        raise UserError(f"{path} {where}: requested_rewrite.prompt must hold '{{}}' where the subject goes")
    new, true = rw.get("target_new"), rw.get("target_true")
    target = _text(path, where, new.get("str") if isinstance(new, dict) else None, "requested_rewrite.target_new.str")
    truth = true.get("str") if isinstance(true, dict) else None
    neighbours = _texts(path, where, r.get("neighborhood_prompts", []), "neighborhood_prompts")
    if neighbours and not truth:
        raise UserError(f"{path} {where}: neighborhood_prompts need requested_rewrite.target_true.str (their answer)")
    relation = rw.get("relation_id") if isinstance(rw.get("relation_id"), str) else EDIT
    return EditRecord(subject, template.replace("{}", subject), target,
                      _texts(path, where, r.get("paraphrase_prompts", []), "paraphrase_prompts"),
                      tuple((p, truth) for p in neighbours), truth, relation, where)


def teacher_forced_row(tok, prompt: str, answer: str) -> Encoded:
    """`prompt + " " + answer` tokenized in one piece (as EasyEdit does), the labels on the tokens after the
    prompt's own length."""
    ids = tok(prompt + " " + answer, add_special_tokens=False)["input_ids"]
    n = len(tok(prompt, add_special_tokens=False)["input_ids"])
    n = min(n, len(ids) - 1)
    return Encoded(ids, [IGNORE] * n + ids[n:])


@dataclass
class EditRows:
    """The teacher-forced rows of a list of edits: per edit its prompt, its rephrases and its locality prompts."""

    reliability: list[Encoded] = field(default_factory=list)
    generalisation: list[list[Encoded]] = field(default_factory=list)
    locality: list[list[Encoded]] = field(default_factory=list)

    @classmethod
    def of(cls, tok, records: list[EditRecord]) -> EditRows:
        return cls([teacher_forced_row(tok, r.prompt, r.target) for r in records],
                   [[teacher_forced_row(tok, q, r.target) for q in r.rephrases] for r in records],
                   [[teacher_forced_row(tok, q, a) for q, a in r.locality] for r in records])
