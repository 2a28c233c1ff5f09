"""More than one phrasing per question, made by rules: a fact asked one way is learned for that wording only.

Measured on the bundled model: a fact trained from a single question is recalled by a differently worded question
about a third of the time; trained from several phrasings of the question it is recalled far more often (the
README's sessions table). The bundled 135M model cannot paraphrase (asked to, it answers the question instead), so
the phrasings come from rules that hold for any FAQ-style question:

- the question word rephrased ("Who is X?" → "Which person is X?", "Where is X?" → "Where can I find X?",
  "When is X?" → "On what date is X?", "How much is X?" → "What does X cost?", "What is the X of Y?" →
  "Tell me the X of Y."),
- everyday words swapped for their synonyms (e-mail/email, phone number/telephone number, deadline/last day...),
- an acronym swapped with its expansion when the file itself spells it out ("CS" ↔ "Computer Science"),
- the question wrapped as people type it ("Can you tell me who ...?", "quick question: ...", all lower case).

`rephrasings(question, n, seed)` returns up to n distinct phrasings other than the question itself, in a
deterministic order (the same seed gives the same list).
"""

from __future__ import annotations

import random
import re

# (pattern at the start of a question, replacements); \1.. are the pattern's groups, matched case-insensitively.
_OPENINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"who is (.+)\?$", ("Which person is \\1?", "Tell me who \\1 is.", "Who's \\1?")),
    (r"who (\w+s) (.+)\?$", ("Which person \\1 \\2?", "Who is the person who \\1 \\2?", "Tell me who \\1 \\2.")),
    (r"who do i (.+)\?$", ("Whom should I \\1?", "Which person do I \\1?", "Who should I \\1?")),
    (r"where is (.+)\?$", ("Where can I find \\1?", "What is the location of \\1?", "Tell me where \\1 is.")),
    (r"where are (.+)\?$", ("Where can I find \\1?", "In what place are \\1?", "Where exactly are \\1?")),
    (r"where do (.+)\?$", ("Where should \\1?", "In what place do \\1?", "Tell me where \\1.")),
    (r"when is (.+)\?$", ("On what date is \\1?", "What is the date of \\1?", "Tell me when \\1 is.")),
    (r"when does (.+)\?$", ("At what time does \\1?", "On what day does \\1?", "When exactly does \\1?")),
    (r"when do (.+)\?$", ("At what time do \\1?", "On what date do \\1?", "When exactly do \\1?")),
    (r"how much is (.+)\?$", ("What does \\1 cost?", "What is the price of \\1?", "How much do I pay for \\1?")),
    (r"how much does (.+) cost\?$", ("What is the price of \\1?", "What does \\1 cost?", "How much is \\1?")),
    (r"how many (.+)\?$", ("What number of \\1?", "Tell me how many \\1.", "How many \\1, exactly?")),
    (r"how long (.+)\?$", ("For how long \\1?", "Tell me how long \\1.", "What is the time limit: how long \\1?")),
    (r"how do i (.+)\?$", ("How can I \\1?", "What is the way to \\1?", "What should I do to \\1?")),
    (r"what is the (.+?) of (.+)\?$", ("Tell me the \\1 of \\2.", "What's the \\1 of \\2?", "Give me the \\1 of \\2.")),
    (r"what is (.+)\?$", ("Tell me \\1.", "What's \\1?", "Do you know \\1?")),
    (r"what are (.+)\?$", ("Tell me \\1.", "What would \\1 be?", "Do you know \\1?")),
    (r"which (.+)\?$", ("What \\1?", "Tell me which \\1.", "Which one: \\1?")),
)

# Groups of interchangeable everyday words and phrases (whole words, case-insensitive).
_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("e-mail address", "email address", "e-mail", "email"),
    ("phone number", "telephone number", "phone"),
    ("deadline", "last day", "due date"),
    ("professor", "prof"),
    ("department", "dept"),
    ("teaches", "instructs"),
    ("runs", "manages", "leads"),
    ("handles", "takes care of", "deals with"),
    ("director", "head"),
    ("chair", "head"),
    ("course", "class"),
    ("cost", "price"),
    ("allowed", "permitted"),
)

_WRAPPERS = ("Can you tell me: {q}", "Quick question: {q}", "{lower}", "I'd like to know: {q}", "Please answer: {q}")


def acronyms(texts: list[str]) -> dict[str, str]:
    """Acronyms the texts themselves spell out: {"CS": "Computer Science"} when both occur (initials match)."""
    joined = " ".join(texts)
    out = {}
    for acro in set(re.findall(r"\b[A-Z]{2,5}\b", joined)):
        words = r"\s+".join(rf"{c}\w+" for c in acro)
        m = re.search(rf"\b({words})\b", joined)
        if m:
            out[acro] = " ".join(m.group(1).split())
    return out


def _swap_synonyms(q: str, rng: random.Random) -> list[str]:
    out = []
    for group in _SYNONYMS:
        for word in group:
            pattern = re.compile(rf"\b{re.escape(word)}\b", re.I)
            if pattern.search(q):
                for other in group:
                    if other != word:
                        out.append(pattern.sub(other, q, count=1))
                break
    rng.shuffle(out)
    return out


def _swap_acronyms(q: str, known: dict[str, str]) -> list[str]:
    out = []
    for acro, full in known.items():
        if re.search(rf"\b{acro}\b", q):
            out.append(re.sub(rf"\b{acro}\b", full, q))
        elif re.search(rf"\b{re.escape(full)}\b", q, re.I):
            out.append(re.sub(rf"\b{re.escape(full)}\b", acro, q, flags=re.I))
    return out


def _reopen(q: str) -> list[str]:
    for pattern, forms in _OPENINGS:
        m = re.match(pattern, q.strip(), re.I)
        if m:
            return [_sentence(m.expand(f)) for f in forms]
    return []


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def rephrasings(question: str, n: int, seed: int = 0, known_acronyms: dict[str, str] | None = None) -> list[str]:
    """Up to `n` phrasings of `question`, none equal to it: reworded openings first, then synonyms and acronyms,
    then the question as people type it. Deterministic for a given seed."""
    rng = random.Random(f"{seed}:{question}")
    q = " ".join(question.split())
    reopened = _reopen(q)
    rng.shuffle(reopened)
    lexical = _swap_synonyms(q, rng) + _swap_acronyms(q, known_acronyms or {})
    rng.shuffle(lexical)
    lower = q.lower().rstrip("?").strip()
    wrapped = [w.format(q=q[:1].lower() + q[1:], lower=lower) for w in _WRAPPERS]
    rng.shuffle(wrapped)
    # Interleave so that a small n already mixes kinds: one reopening, one lexical swap, one wrapper, and so on.
    pools, out, seen = [reopened, lexical, wrapped], [], {q.lower()}
    while len(out) < n and any(pools):
        for pool in pools:
            while pool:
                cand = pool.pop(0)
                if cand.lower() not in seen:
                    seen.add(cand.lower())
                    out.append(cand)
                    break
            if len(out) >= n:
                break
    return out
