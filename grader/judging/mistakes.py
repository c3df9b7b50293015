"""A named mistake: a short name for the class page, and the hint the student reads.

A check file's ``mistakes={...}`` maps each mistake to the value it produces; keyed by a
``Mistake``, the recognised mistake reaches results.json under its name, so the class page can
rank "transposed pattern" once across every check it shows up in, while the student still reads
the hint ("the pattern is transposed: it must be [query, key] ..."). A plain string key still
works (it is the hint, and the mistake stays unnamed).

``grade.note(..., hint=Mistake(...))`` names the root cause of a dependent failure: the class page
counts it under that mistake, not as a mistake of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    name: str  # a few words, read as a mistake: "transposed pattern", "BOS token dropped"
    hint: str  # what the student is told: what went wrong and how to fix it

    def __post_init__(self) -> None:
        if not self.name.strip() or self.name.strip() == self.hint.strip():
            raise ValueError(f"Mistake({self.name!r}, ...): give it a short name of its own, distinct from its hint")

    def __str__(self) -> str:
        return self.hint


def hint_and_name(advice: str | Mistake | None) -> tuple[str | None, str | None]:
    """(the hint to show, the mistake's name or None) of a hint that may be a named mistake."""
    if isinstance(advice, Mistake):
        return advice.hint, advice.name
    return advice, None
