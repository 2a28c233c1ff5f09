"""Tidying generated answers without ever cutting a URL, an e-mail address, a number or a code span.

A small model that runs out of tokens stops mid-sentence, and sometimes starts a new "User:" turn on its own.
`tidy` drops such a made-up turn and, when the answer was cut by the token limit, the unfinished last sentence.
A sentence ends at . ! or ? followed by a space or the end, but never inside a protected span: the old bot cut
"https://cs.msu.edu/apply" at its first dot.

`StreamTidier` does the same while an answer is generated, so a streamed answer is exactly the tidied whole: it
sends whole sentences only (the unfinished tail is held back until the answer ends, in case the token limit cuts it),
and stops generation at a made-up turn or a stop string.
"""

from __future__ import annotations

import re

_PROTECTED = re.compile(
    r"```.*?(?:```|\Z)"                         # fenced code, closed or not
    r"|`[^`\n]*`"                               # inline code
    r"|\b(?:https?://|ftp://|www\.)[^\s<>\"]+"  # URLs
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"            # e-mail addresses
    r"|\b\d+(?:[.,:]\d+)+\b"                    # 3.14, 1,000, 10:30
    r"|\b(?:e\.g|i\.e|etc|Dr|Prof|Mr|Mrs|Ms|St|No)\.",  # abbreviations
    re.S,
)
_TRAILING = ".,;:!?)]}'\""
_TURN = re.compile(r"\n\s*(?:(?:user|assistant|system|question|q)\s*:|(?:user|assistant|system)\s*(?:\n|\Z))", re.I)
_SENTENCE_END = re.compile(r"[.!?](?=\s|\Z)")


def protected_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every URL, e-mail, number and code span; a URL's trailing punctuation is not part of it."""
    spans = []
    for m in _PROTECTED.finditer(text):
        start, end = m.span()
        if m.group().startswith(("http", "ftp", "www")):
            while end > start and text[end - 1] in _TRAILING:
                end -= 1
        spans.append((start, end))
    return spans


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(s <= pos < e for s, e in spans)


def sentence_ends(text: str) -> list[int]:
    """Offsets just past each sentence-ending mark that is not inside a protected span."""
    spans = protected_spans(text)
    return [m.end() for m in _SENTENCE_END.finditer(text) if not _inside(m.start(), spans)]


def tidy(text: str, truncated: bool = False) -> str:
    """The answer without a made-up next turn and, if `truncated`, without its unfinished last sentence."""
    spans = protected_spans(text)
    for m in _TURN.finditer(text):
        if not _inside(m.start(), spans):
            text = text[: m.start()]
            break
    text = text.strip()
    if truncated and text and text[-1] not in ".!?" and text.count("```") % 2 == 0:
        ends = sentence_ends(text)
        if ends:
            text = text[: ends[-1]]
    return text.strip()


_SETTLED_END = re.compile(r"[.!?](?=\s)")  # a sentence end more text cannot undo: whitespace already follows it


def made_up_turn(text: str) -> int | None:
    """Where a made-up next turn ("\\nUser: ...") starts, once more text cannot change that; else None."""
    spans = protected_spans(text)
    for m in _TURN.finditer(text):
        if _inside(m.start(), spans):
            continue
        word = m.group().lstrip()
        if word.endswith(":") or "\n" in word:
            return m.start()
        return None  # "\nUser" at the very end: "\nUsername" would not be a turn
    return None


def settled(text: str) -> str:
    """The start of `tidy(text + more)` that no continuation can change: the text up to its last sentence end that
    whitespace already follows, outside every protected span and before any unclosed backtick."""
    body = text.lstrip()
    spans = protected_spans(body)
    tick = next((i for i, c in enumerate(body) if c == "`" and not _inside(i, spans)), len(body))
    ends = [m.end() for m in _SETTLED_END.finditer(body, 0, tick) if not _inside(m.start(), spans)]
    return body[: ends[-1]] if ends else ""


def held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters might be the start of a stop string (or of a multi-byte character)."""
    if text.endswith("\ufffd"):
        return 1
    return max((n for s in stops for n in range(len(s) - 1, 0, -1) if text.endswith(s[:n])), default=0)


class StreamTidier:
    """Tidies an answer while it is generated (see the module docstring).

    `feed(text)` takes the whole text so far and returns the piece that may be sent now; `stopped` turns true at a
    stop string or a made-up turn (generation should end there). `finish(truncated)` returns the rest; `final` is then
    the whole tidied answer, equal to `tidy(raw, truncated)` and starting with everything sent."""

    def __init__(self, stops: list[str] | None = None):
        self.stops = [s for s in stops or [] if s]
        self.raw, self.sent, self.stopped, self.final = "", "", False, ""

    def feed(self, text: str) -> str:
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        turn = made_up_turn(text)
        if turn is not None:
            cuts.append(turn)
        if cuts:
            text, self.stopped = text[: min(cuts)], True
        self.raw = text
        if self.stopped:
            return ""
        lead = len(text) - len(text.lstrip())
        ready = settled(text)[: max(0, len(text) - lead - held_back(text, self.stops))]
        piece = ready[len(self.sent):]
        self.sent += piece
        return piece

    def finish(self, truncated: bool) -> str:
        final = tidy(self.raw, truncated=truncated and not self.stopped)
        self.final = final if final.startswith(self.sent) else self.sent  # (not expected: see the tests)
        return self.final[len(self.sent):]
