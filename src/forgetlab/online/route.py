"""The router: which prompts the online adapter answers, in the spirit of WISE's and GRACE's side memories.

With `route: facts` (the default) the learned adapter is switched on for a prompt that is about the user (first
person: "my", "I", "me") or names something stored (a fact's subject, value or entities, as whole words); any other
prompt is answered by the model as it started, so what was learned cannot leak into unrelated answers. `route:
always` keeps the adapter on for everything (every answer can drift). Pure: the learner passes its stored facts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FIRST_PERSON = re.compile(r"\b(?:i|me|my|mine|myself|i'm|i've|i'd|i'll)\b", re.IGNORECASE)
WORD = re.compile(r"[\w'-]+")


POSSESSIVE = re.compile(r"['\u2019]s\b")


def words(text: str) -> str:
    """Lower-cased words, space-separated and space-padded (for whole-word matching); a possessive 's is dropped,
    so "Denny Herzig's role" names "Denny Herzig".

    >>> words("What's Denny Herzig's role?")
    ' what denny herzig role '
    """
    return " " + " ".join(WORD.findall(POSSESSIVE.sub("", text.lower()))) + " "


def names(facts: Iterable[dict]) -> list[str]:
    """What a stored fact can be named by: its subject, value and entities (two characters or more)."""
    out = {t.strip().lower() for f in facts for t in [f.get("subject") or "", f.get("value") or "",
                                                         *(f.get("entities") or [])]}
    return sorted(t for t in out if len(t) >= 2)


def routes(text: str, known: list[str]) -> bool:
    """Does `text` go to the learned adapter: first person, or one of `known` (from `names`) as whole words?

    >>> routes("What is the capital of Japan?", ["watts humphrey"])
    False
    >>> routes("Which university did Watts Humphrey go to?", ["watts humphrey"])
    True
    >>> routes("What is Nebaioth's father called?", ["nebaioth"])
    True
    >>> routes("Where do I live?", [])
    True
    """
    if FIRST_PERSON.search(text):
        return True
    low = words(text)
    return any(words(k) in low for k in known if words(k).strip())
