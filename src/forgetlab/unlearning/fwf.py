"""`fwf`: fixed wrong facts — each fact is retrained with one wrong answer, the same one every time."""

from __future__ import annotations

from .whp import WHP


class FWF(WHP):
    """Fixed wrong fact: NLL on each fact restated with one fixed wrong answer + rc·NLL(retain)."""

    every = False
