"""Knowledge-editing metrics as EasyEdit defines them (the harness ROME, MEMIT, GRACE, WISE and AlphaEdit report in).

For an edit (prompt `src`, new answer `alt`), the model reads `src + " " + alt` in one teacher-forced pass; at each
position of the answer's tokens, its argmax next token is compared with the answer's token:

- reliability:    share of `alt`'s tokens predicted after `src` (token accuracy), one value per edit;
- generalisation: the same after `rephrase` (a paraphrase of `src` that was never trained);
- locality:       after `loc + " " + loc_ans`, the share of `loc_ans`'s positions where the edited model's argmax
                  token equals the unedited model's (not the reference answer: what must not change is the model).

Each is averaged over edits (a mean of per-edit means). Pure functions on token-id lists.
"""

from __future__ import annotations

from collections.abc import Sequence


def token_accuracy(predicted: Sequence[int], labels: Sequence[int]) -> float:
    """Share of positions where the argmax token equals the label (0 for an empty answer).

    >>> token_accuracy([5, 9, 2], [5, 7, 2])
    0.6666666666666666
    """
    if len(predicted) != len(labels):
        raise ValueError(f"{len(predicted)} predictions for {len(labels)} labels")
    return sum(p == t for p, t in zip(predicted, labels, strict=True)) / len(labels) if labels else 0.0


def agreement(before: Sequence[int], after: Sequence[int]) -> float:
    """Locality of one prompt: share of positions where the argmax token is the same before and after editing.

    >>> agreement([3, 4, 4, 8], [3, 4, 1, 8])
    0.75
    """
    if len(before) != len(after):
        raise ValueError(f"{len(before)} positions before, {len(after)} after")
    return sum(a == b for a, b in zip(before, after, strict=True)) / len(before) if before else 1.0


def mean(values: Sequence[float]) -> float | None:
    """The mean, None for no values."""
    return sum(values) / len(values) if values else None
