"""Fact detection: which sentences of a user's turn state a fact, and the question–answer forms it is trained as.

    "My sister's name is Oriel."  →  Fact(relation "person", subject "sister", value "Oriel", confidence 0.95,
                                         forms [("What is my sister's name?", "Your sister's name is Oriel."), ...])

A sentence is a question (never a fact) when it ends in "?" or starts with a question word. Otherwise every pattern
is tried on it; the most confident match above its pattern's `min_confidence` wins. Confidence = the pattern's base
+ coverage_boost × (share of the sentence the match covers) + entity_boost when the value holds a name, number or
code. A statement trained only as "I understand. <statement>" is not recalled by a question on a small model, so
each fact is trained as its question forms with the answer in the second person, plus the statement itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..config.online import DetectConfig, PatternConfig
from ..errors import UserError
from .patterns import BUILTIN

FLIP = {"i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself", "i'm": "you're", "am": "are",
        "i've": "you've", "i'll": "you'll", "i'd": "you'd", "we": "you", "us": "you", "our": "your", "ours": "yours",
        "was": "were"}
SENTENCE = re.compile(r"(?<=[.!?;])\s+|\s*,?\s+and (?=(?:i|my|i'm)\b)", re.IGNORECASE)
ENTITY = re.compile(r"\b[A-Z][\w'\-]*(?:\s+[A-Z][\w'\-]*)*|\b\d[\d:/\-.,]*\b|\b(?=[A-Za-z\-]*\d)[A-Za-z\d\-]{3,}\b")


@dataclass
class Fact:
    """A fact found in a sentence, with the forms it is trained as and checked with."""

    statement: str
    pattern: str
    relation: str
    subject: str
    value: str
    entities: list[str]
    confidence: float
    forms: list[tuple[str, str]]  # (question, answer), answer in the second person
    meta: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Facts with the same key replace each other in the memory (a new address replaces the old one)."""
        return f"{self.relation}:{self.subject.lower()}"


def flip_person(text: str) -> str:
    """First person to second ("my sister" → "your sister", "I was" → "you were"), word by word, case kept at the start.

    >>> flip_person("my old flat where I was born")
    'your old flat where you were born'
    """
    def swap(m: re.Match) -> str:
        word = m.group(0)
        out = FLIP.get(word.lower(), word)
        return out.capitalize() if word[0].isupper() and word.lower() != "i" else out

    return re.sub(r"[A-Za-z']+", swap, text)


def entities(text: str, kind: str = "regex") -> list[str]:
    """Names (capitalised words), numbers and codes in `text`; with kind 'spacy', spaCy's named entities."""
    if kind == "spacy":
        return [e.text for e in _spacy()(text).ents]
    return [m.group(0) for m in ENTITY.finditer(text)]


def _spacy():
    try:
        import spacy

        return spacy.load("en_core_web_sm")
    except (ImportError, OSError):
        raise UserError("detect.entities is 'spacy' but spaCy or its en_core_web_sm model is not installed; "
                        "install them (pip install 'forgetlab[spacy]') or use 'regex'") from None


def sentences(text: str) -> list[str]:
    """The turn cut into sentences, "..., and I live in Oslo" split off as its own."""
    return [s.strip() for s in SENTENCE.split(text.strip()) if s and s.strip()]


def is_question(sentence: str, cfg: DetectConfig) -> bool:
    low = sentence.strip().lower()
    return low.endswith("?") or any(low == w or low.startswith(w + " ") or low.startswith(w + "'")
                                    for w in cfg.question_words)


def match(sentence: str, pat: PatternConfig, cfg: DetectConfig) -> Fact | None:
    """The fact `pat` finds in `sentence`, or None (no match, or confidence below the pattern's minimum)."""
    body = sentence.strip().rstrip(".!;").strip()
    body = re.sub(r"^(?:hi|hello|hey|oh|ok|okay|so|well|also|btw|by the way|fyi)\b[,!]?\s*", "", body, flags=re.I)
    m = re.fullmatch(pat.pattern, body, flags=re.IGNORECASE)
    if not m or not m.group("value"):
        return None
    groups = {k: (v or "").strip() for k, v in m.groupdict().items()}
    value = groups["value"].strip(" \"'")
    found = entities(value, cfg.entities)
    confidence = pat.base + cfg.coverage_boost * (m.end() - m.start()) / max(1, len(body)) \
        + (cfg.entity_boost if found else 0.0)
    if confidence < pat.min_confidence:
        return None
    asked = {k: re.sub(r"^(My|Our|The|Your)\b", lambda w: w.group(1).lower(), v) for k, v in groups.items()}
    asked["value"] = value
    told = {k: flip_person(v) for k, v in asked.items()}
    forms = [(q.format(**asked), _sentence(pat.answer.format(**told))) for q in pat.questions]
    return Fact(body + ".", pat.name, pat.relation, groups.get("subject", ""), value, found, round(confidence, 3), forms)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def detect(text: str, cfg: DetectConfig) -> list[Fact]:
    """Every fact stated in a user's turn (questions skipped), most confident pattern per sentence."""
    patterns = cfg.patterns if cfg.patterns is not None else BUILTIN
    out = []
    for sentence in sentences(text):
        if is_question(sentence, cfg):
            continue
        found = [f for f in (match(sentence, p, cfg) for p in patterns) if f]
        if found:
            out.append(max(found, key=lambda f: f.confidence))
    return out


def is_question_turn(text: str, cfg: DetectConfig) -> bool:
    """A turn whose every sentence is a question (answered, not learned from)."""
    parts = sentences(text)
    return bool(parts) and all(is_question(s, cfg) for s in parts)
