"""The class's misconceptions, each counted once: what the class page ranks for an instructor.

A failed check that recognised a mistake carries its short name (results.json's
``extra_data.hints[].mistake``). Failures are grouped by that name within an exercise, not by
(hint, check): "transposed pattern" is one row however many checks it failed. A note names the
root cause of a test's failures ("fix token_index first"): that test's failures count under the
root cause, not as mistakes of their own. Failures that named no mistake are listed apart, by check,
so the ranked table reads as mistakes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from grader.classroom.gradebook import Failure, Row, TestLine

CASE = re.compile(r" \[[^\]]*\]$")  # a parametrized test's case, at the end of its title


@dataclass
class Misconception:
    exercise: str  # "03"
    name: str  # "transposed pattern"; for an unnamed failure, the check that failed
    students: list[str] = field(default_factory=list)  # in gradebook order, each once
    checks: list[str] = field(default_factory=list)  # "03 · title › check", each once
    hints: Counter[str] = field(default_factory=Counter)  # what the students were told, by how often

    @property
    def hint(self) -> str:
        """The hint most students saw; a note's hint counts 0, so its root's own advice comes first
        (and the note's hint stands when it is all there is)."""
        return self.hints.most_common(1)[0][0] if self.hints else ""

    def add(self, student: str, test: TestLine, failure: Failure, weight: int = 1) -> None:
        if student not in self.students:
            self.students.append(student)
        # A note names the check that depends on the root cause; its own name says nothing more.
        where = test.title + (f" › {failure.check}" if failure.check and not failure.note else "")
        if where not in self.checks:
            self.checks.append(where)
        self.hints[failure.hint] += weight


def misconceptions(rows: list[Row]) -> tuple[list[Misconception], list[Misconception]]:
    """(named mistakes and root causes, failed checks that named none), each ranked by how many
    students they concern, most first."""
    named: dict[tuple[str, str], Misconception] = {}
    unnamed: dict[tuple[str, str], Misconception] = {}
    for row in rows:
        for test in row.tests:
            roots = [f for f in test.failures if f.note and f.mistake]
            for failure in test.failures:
                if roots and failure not in roots:
                    continue  # a consequence of the root cause the note names: counted there
                if failure.mistake:
                    key = (test.exercise, failure.mistake)
                    # A note's hint says "fix it first"; the root's own check says how.
                    named.setdefault(key, Misconception(*key)).add(row.name, test, failure, 0 if failure.note else 1)
                else:
                    key = (test.exercise, _check_of(test, failure))
                    unnamed.setdefault(key, Misconception(*key)).add(row.name, test, failure)
    return _ranked(named), _ranked(unnamed)


def _check_of(test: TestLine, failure: Failure) -> str:
    """The failed check in words: the test's title without its exercise or its case ("[France>0.3]":
    the cases of one check are one row), and the soft check's name."""
    title = CASE.sub("", test.title.split(" · ", 1)[-1])
    return f"{title} › {failure.check}" if failure.check else title


def _ranked(found: dict[tuple[str, str], Misconception]) -> list[Misconception]:
    return sorted(found.values(), key=lambda m: (-len(m.students), m.exercise, m.name))
