"""Each exercise at a glance: how its scores spread over the class, and who left it untouched.

Scores are percentages of the exercise's points, over the graded submissions. An exercise is
"not attempted" by a submission when every one of its checks still met the stub's
NotImplementedError.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from grader.classroom.gradebook import Gradebook


@dataclass(frozen=True)
class ExerciseSummary:
    exercise: str  # "03"
    possible: float  # its points
    scores: tuple[float, ...]  # each graded submission's percent of them, ascending
    not_attempted: list[str] = field(default_factory=list)  # the submissions that left it untouched

    @property
    def median(self) -> float:
        return statistics.median(self.scores) if self.scores else 0.0

    @property
    def quartiles(self) -> tuple[float, float]:
        """The middle half of the class lies between these (both the score when there is one)."""
        if len(self.scores) < 2:
            return (self.median, self.median)
        q1, _, q3 = statistics.quantiles(self.scores, n=4, method="inclusive")
        return (q1, q3)

    @property
    def lowest(self) -> float:
        return self.scores[0] if self.scores else 0.0

    @property
    def highest(self) -> float:
        return self.scores[-1] if self.scores else 0.0


def by_exercise(book: Gradebook) -> list[ExerciseSummary]:
    """One summary per exercise, in exercise order."""
    graded = [row for row in book.rows if row.graded]
    summaries = []
    for exercise, possible in book.possible.items():
        scores = sorted(round(100 * row.points.get(exercise, 0.0) / possible, 2) if possible else 0.0 for row in graded)
        untouched = [row.name for row in graded
                     if {t.status for t in row.tests if t.exercise == exercise} == {"not_attempted"}]
        summaries.append(ExerciseSummary(exercise, possible, tuple(scores), untouched))
    return summaries


def most_left_alone(summaries: list[ExerciseSummary]) -> ExerciseSummary | None:
    """The exercise the most submissions did not attempt (the first on a tie); None if every
    exercise was attempted by all."""
    most = max(summaries, key=lambda s: len(s.not_attempted), default=None)
    return most if most is not None and most.not_attempted else None
