"""Facts to forget and to keep, read from Deeb & Roger's JSONL formats, TOFU-style records, the project's `file:`
records, or the built-in known facts.

- MCQ:     {"question", "choices": [...], "answer": int}  (the project's {"options", "answer": index or letter} too)
- corpus:  {"text", "correct_answer"?, "wrong_answers"?: [...]}  (a sentence stating the fact)
- QA:      {"question", "answer": str, "paraphrased_answer"?: str, "perturbed_answer"?: [...]}  (TOFU's layout:
           the last two give the truth ratio); instruction / chat records as `file:` reads them
- text:    {"text"}  (MUSE's raw layout: passages to forget or keep, scored by their token log-probs)
- built-in: `builtin:animals`, `builtin:food` (see data/known.py)

A fact trains as plain text: a corpus sentence, or "Question: q\\nAnswer:" + " answer" with the loss on the answer
(the same form the MCQ log-likelihood scores). Wrong answers (for `whp` and `fwf`) come from a record's own
`wrong_answers` or MCQ choices, else from the other facts' answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from ..batching import Encoded, encode_continuation, encode_text
from ..errors import UserError
from .file import parse_example, read_records
from .known import TOPICS
from .records import LETTERS, Example, MCQItem, user


@dataclass(frozen=True)
class Fact:
    fact_id: str
    question: str | None = None
    answer: str | None = None
    choices: tuple[str, ...] = ()
    answer_index: int | None = None
    text: str | None = None
    wrong: tuple[str, ...] = field(default=())
    paraphrased: str | None = None  # TOFU: the answer reworded (the truth ratio's "correct" on forget and retain)
    perturbed: tuple[str, ...] = ()  # TOFU: false answers in the same style (the truth ratio's "wrong")


@dataclass
class FactSet:
    name: str
    facts: list[Fact]

    def mcq(self) -> list[MCQItem]:
        return [MCQItem(f.question, f.choices, f.answer_index, {"fact_id": f.fact_id}) for f in self.facts
                if f.choices and f.question]

    def qa(self) -> list[Example]:
        return [Example(user(f.question), f.answer, {"fact_id": f.fact_id}) for f in self.facts if f.question and f.answer]

    def rows(self, tok, max_length: int) -> list[Encoded]:
        """One training row per fact, stating it (the correct answer)."""
        return [fact_row(tok, f, f.answer, max_length) for f in self.facts]

    def wrong_rows(self, tok, max_length: int, every: bool, seed: int) -> list[Encoded]:
        """Rows stating wrong answers: every wrong answer of each fact (`every`, WHP's random incorrect answers) or
        one fixed wrong answer per fact (FWF, chosen by `seed`)."""
        rng = random.Random(seed)
        answers = sorted({f.answer for f in self.facts if f.answer})
        rows = []
        for f in self.facts:
            wrong = list(f.wrong) or [a for a in answers if a != f.answer]
            if not wrong or (f.text and not f.answer):
                raise UserError(f"{self.name}: fact {f.fact_id} has no wrong answers to train on; give "
                                "'correct_answer' and 'wrong_answers' (corpus) or MCQ choices")
            chosen = wrong if every else [rng.choice(wrong)]
            rows += [fact_row(tok, f, w, max_length) for w in chosen]
        return rows

    def texts(self) -> list[str]:
        return [f.text or f"Question: {f.question}\nAnswer: {f.answer}" for f in self.facts]


def fact_row(tok, f: Fact, answer: str, max_length: int) -> Encoded:
    if f.text:
        text = f.text.replace(f.answer, answer) if f.answer and answer != f.answer else f.text
        return encode_text(tok, text, max_length)
    return encode_continuation(tok, qa_prompt(f.question), " " + answer, max_length)


def qa_prompt(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def builtin(topic: str, seed: int = 0) -> FactSet:
    """A built-in topic as MCQ facts, the choices in a fixed shuffled order."""
    facts = []
    for i, (q, a, wrong) in enumerate(TOPICS[topic]):
        choices = [a, *wrong]
        random.Random(f"{topic}-{i}-{seed}").shuffle(choices)
        facts.append(Fact(f"{topic}/{i}", q, a, tuple(choices), choices.index(a), wrong=tuple(wrong)))
    return FactSet(f"builtin:{topic}", facts)


def read_facts(spec: str) -> FactSet:
    """The facts in `spec`: `builtin:<topic>`, or a JSON / JSONL file (optionally prefixed `file:`)."""
    if spec.startswith("builtin:"):
        topic = spec.split(":", 1)[1]
        if topic not in TOPICS:
            raise UserError(f"{spec}: unknown built-in topic; valid: {', '.join('builtin:' + t for t in TOPICS)}")
        return builtin(topic)
    path = Path(spec.removeprefix("file:")).expanduser()
    facts = [parse_fact(path, where, r, i) for i, (where, r) in enumerate(read_records(path))]
    return FactSet(str(path), facts)


def parse_fact(path: Path, where: str, r: dict, i: int) -> Fact:
    fid = f"{path.stem}/{i}"
    if "choices" in r or "options" in r:
        key = "choices" if "choices" in r else "options"
        choices, question, answer = r.get(key), r.get("question"), r.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise UserError(f"{path} {where}: field 'question' must be a non-empty string")
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS) or \
                not all(isinstance(c, str) and c.strip() for c in choices):
            raise UserError(f"{path} {where}: field '{key}' must be a list of 2 to 10 non-empty strings")
        if isinstance(answer, str) and len(answer) == 1 and answer.upper() in LETTERS[:len(choices)]:
            answer = LETTERS.index(answer.upper())
        if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
            raise UserError(f"{path} {where}: field 'answer' is {answer!r}, not a choice index 0..{len(choices) - 1}; "
                            "fix the record (answers count from 0)")
        wrong = tuple(c for j, c in enumerate(choices) if j != answer)
        return Fact(fid, question, choices[answer], tuple(choices), answer, wrong=wrong)
    if "text" in r:
        text, correct, wrong = r.get("text"), r.get("correct_answer"), r.get("wrong_answers", [])
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{path} {where}: field 'text' must be a non-empty string")
        if correct is not None and (not isinstance(correct, str) or correct not in text):
            raise UserError(f"{path} {where}: 'correct_answer' must be a string that occurs in 'text'")
        if not isinstance(wrong, list) or not all(isinstance(w, str) and w.strip() for w in wrong):
            raise UserError(f"{path} {where}: 'wrong_answers' must be a list of non-empty strings")
        return Fact(fid, answer=correct, text=text, wrong=tuple(wrong))
    if "question" in r and "answer" in r:
        q, a = r["question"], r["answer"]
        if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not a.strip():
            raise UserError(f"{path} {where}: 'question' and 'answer' must be non-empty strings")
        para, pert = r.get("paraphrased_answer"), r.get("perturbed_answer", [])
        if para is not None and (not isinstance(para, str) or not para.strip()):
            raise UserError(f"{path} {where}: 'paraphrased_answer' must be a non-empty string")
        if isinstance(pert, str):
            pert = [pert]
        if not isinstance(pert, list) or not all(isinstance(w, str) and w.strip() for w in pert):
            raise UserError(f"{path} {where}: 'perturbed_answer' must be a list of non-empty strings (TOFU's layout)")
        return Fact(fid, q, a, wrong=tuple(pert), paraphrased=para, perturbed=tuple(pert))
    if "instruction" in r or "messages" in r:
        ex = parse_example(path, where, r)
        return Fact(fid, ex.messages[-1]["content"], ex.target)
    raise UserError(f"{path} {where}: unknown record; expected an MCQ {{question, choices, answer}}, a corpus "
                    "{text}, a QA {question, answer} or an instruction record")
