"""A class's gradebook, read from per-submission Gradescope results.json files.

`mechgrade grade-all` and `mechgrade merge-results` both end here: one row per submission
(grades.csv) and what the class page shows (grader.classroom.page). Everything is read from the
results.json files, so results graded anywhere (one `mechgrade grade --submission` per job on a
batch scheduler, say) merge into the same gradebook.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.classroom.identity import shown

STATUS_CHARS = 300  # a gradebook cell; the whole reason stays in the submission's results.json
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as a formula (OWASP)
INCOMPLETE = ("did not reach its end", "ended abnormally", "was stopped after", "The run stopped early")
HINT_LINE = re.compile(r"^  hint: (.+)$", re.MULTILINE)  # results.json without extra_data


@dataclass(frozen=True)
class Failure:
    """A failed check that showed a hint, as results.json carries it."""

    check: str  # the soft check's name ("" when read from an old results.json's output text)
    hint: str
    mistake: str | None = None  # the named mistake it showed (grader.judging.mistakes)
    note: bool = False  # a note: worth nothing, `mistake` is the root cause of the test's failures


@dataclass(frozen=True)
class TestLine:
    __test__ = False  # not a pytest test class, despite its name
    exercise: str  # "03"
    number: str  # "3.1"
    title: str  # "03 · attention_pattern gives ..."
    passed: bool
    failures: tuple[Failure, ...]  # the checks that failed with a hint
    status: str = ""  # grader.judging.results.Status ("not_attempted", ...); "" when not recorded


@dataclass
class Row:
    name: str
    points: dict[str, float] = field(default_factory=dict)  # exercise -> points
    possible: dict[str, float] = field(default_factory=dict)  # exercise -> max points in this file
    status: str = "completed"
    report: str | None = None  # report.html, relative to the gradebook's folder
    tests: list[TestLine] = field(default_factory=list)

    @property
    def total(self) -> float:
        return round(sum(self.points.values()), 4)

    @property
    def graded(self) -> bool:
        return bool(self.tests)


def exercise_of_number(number: str) -> str:
    """"3.1" -> "03" (grader.reports.gradescope.gradescope_number, backwards)."""
    head = str(number).split(".")[0]
    return head.zfill(2) if head.isdigit() else head


def read_row(results: Path, name: str, report_base: Path | None = None) -> Row:
    """One submission's row from its results.json; a file that cannot be read is a row that says so."""
    row = Row(name)
    try:
        document = json.loads(results.read_text(encoding="utf-8"))
        tests = document["tests"]
        assert isinstance(tests, list)
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        row.status = _cut(f"failed: unreadable results.json ({type(exc).__name__}: {exc})", STATUS_CHARS)
        return row
    for test in tests:
        extra = test.get("extra_data") if isinstance(test.get("extra_data"), dict) else {}
        exercise = str(extra.get("exercise") or exercise_of_number(test.get("number", "0")))
        row.points[exercise] = row.points.get(exercise, 0.0) + float(test.get("score") or 0.0)
        row.possible[exercise] = row.possible.get(exercise, 0.0) + float(test.get("max_score") or 0.0)
        row.tests.append(TestLine(exercise, str(test.get("number", "")), str(test.get("name", "")),
                                  test.get("status") == "passed", _failures(test, extra),
                                  str(extra.get("status") or _status_word(test))))
    row.status = _cut(_status(document), STATUS_CHARS)
    report = results.parent / "report.html"
    if report.exists():
        row.report = os.path.relpath(report, report_base) if report_base else str(report)
    return row


def _failures(test: dict[str, Any], extra: dict[str, Any]) -> tuple[Failure, ...]:
    """The failed checks of one test entry. A results.json without extra_data gives only the hint
    lines of its output; one from before mistakes were named gives check and hint, no name."""
    if not isinstance(extra.get("hints"), list):
        return tuple(Failure("", hint.strip()) for hint in HINT_LINE.findall(str(test.get("output", ""))))
    found = []
    for entry in extra["hints"]:
        if isinstance(entry, dict) and entry.get("hint"):
            mistake = entry.get("mistake")
            found.append(Failure(str(entry.get("check", "")), str(entry["hint"]),
                                 str(mistake) if mistake else None, entry.get("note") is True))
    return tuple(found)


def _status_word(test: dict[str, Any]) -> str:
    """A test's status from the first word of its output ("not attempted: 0 / 3 points"), for a
    results.json whose extra_data does not record it."""
    first = str(test.get("output", "")).split(":", 1)[0].strip()
    return {"not attempted": "not_attempted", "timed out": "timed_out"}.get(first, first)


def _status(document: dict[str, Any]) -> str:
    """Otter's grading_status: "completed", or what went wrong, in one line."""
    extra = document.get("extra_data") if isinstance(document.get("extra_data"), dict) else {}
    recorded = extra.get("mechgrade", {}) if isinstance(extra.get("mechgrade"), dict) else {}
    output = str(document.get("output", ""))
    problems = [str(p) for p in recorded.get("problems", [])]
    if not document.get("tests"):
        return "not graded: " + ("; ".join(problems) if problems else _first_line(output, "no check was graded"))
    if any(marker in output for marker in INCOMPLETE):
        reason = next(line for line in output.splitlines() if any(m in line for m in INCOMPLETE))
        return "; ".join(["incomplete: " + reason.strip(), *problems])
    return "completed with problems: " + "; ".join(problems) if problems else "completed"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(" … (see results.json)")] + " … (see results.json)"


def spreadsheet_safe(text: str) -> str:
    """A text cell a spreadsheet shows as text: one starting like a formula gets a leading '
    (OWASP's CSV-injection rule), so '=HYPERLINK(...)' or '-1-1' is never evaluated."""
    return "'" + text if text.startswith(FORMULA_START) else text


def _first_line(text: str, default: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else default


# ---- finding results ----


def find_results(inputs: list[Path]) -> list[tuple[str, Path]]:
    """(name, results.json) for every input: a results.json (named after its folder), any other
    .json file (named after itself), a folder holding results.json, or a folder of those.

    The name is grade-all's: the exact entry name a results.json records (extra_data.mechgrade.
    submission), else the folder's or file's exact name. Two results with one name are never
    merged: each is shown with where it was found."""
    found: list[tuple[str, Path]] = []
    for given in inputs:
        if given.is_file():
            found.append((given.parent.name if given.name == "results.json" else given.stem, given))
        elif (given / "results.json").is_file():
            found.append((given.name, given / "results.json"))
        elif given.is_dir():
            for entry in sorted(given.iterdir()):
                if entry.name.startswith("."):
                    continue
                if entry.is_dir() and (entry / "results.json").is_file():
                    found.append((entry.name, entry / "results.json"))
                elif entry.is_file() and entry.suffix == ".json":
                    found.append((entry.stem, entry))
        else:
            raise FileNotFoundError(f"{given}: no such file or folder")
    named = [(_recorded_name(path) or name, path) for name, path in found]
    counts = Counter(name for name, _ in named)
    return [(shown(name) if counts[name] == 1 else shown(f"{name} ({path})"), path) for name, path in named]


def _recorded_name(results: Path) -> str | None:
    """The entry name grade-all recorded in a results.json; None if it records none."""
    try:
        document = json.loads(results.read_text(encoding="utf-8"))
        name = document["extra_data"]["mechgrade"]["submission"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) and name else None


# ---- the gradebook ----


@dataclass
class Gradebook:
    rows: list[Row]

    @property
    def exercises(self) -> list[str]:
        return sorted({ex for row in self.rows for ex in row.possible})

    @property
    def possible(self) -> dict[str, float]:
        """Each exercise's points: the most any file gives it (a failed run gives it none)."""
        return {ex: max(row.possible.get(ex, 0.0) for row in self.rows) for ex in self.exercises}

    @property
    def possible_total(self) -> float:
        return round(sum(self.possible.values()), 4)

    def percent(self, row: Row) -> float:
        return round(100 * row.total / self.possible_total, 2) if self.possible_total else 0.0

    def csv_text(self) -> str:
        """Otter-Grader's column order: file, one column per question (here: exercise), total,
        possible, percent_correct, grading_status; then the report's path."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180; and a CR in a cell is quoted, not a new row
        writer.writerow(["file", *map(spreadsheet_safe, self.exercises), "total", "possible", "percent_correct",
                         "grading_status", "report"])
        for row in self.rows:  # every text cell made safe; numbers are ours, formatted by _number
            writer.writerow([spreadsheet_safe(row.name), *(_number(row.points.get(ex, 0.0)) for ex in self.exercises),
                             _number(row.total), _number(self.possible_total), _number(self.percent(row)),
                             spreadsheet_safe(row.status), spreadsheet_safe(row.report or "")])
        return out.getvalue()

    # ---- what the class page shows ----

    def distribution(self, bins: int = 10) -> list[tuple[str, int]]:
        """("0-10%", n), ..., ("90-100%", n): the graded submissions by percent."""
        counts = [0] * bins
        for row in self.rows:
            if row.graded:
                counts[min(int(self.percent(row) // (100 / bins)), bins - 1)] += 1
        width = 100 // bins
        return [(f"{i * width}–{(i + 1) * width}%", n) for i, n in enumerate(counts)]

    def pass_rates(self) -> list[tuple[str, str, int, int]]:
        """(number, title, passed, graded) of every check, in the order of the results."""
        seen: dict[str, list[Any]] = {}
        for row in self.rows:
            for test in row.tests:
                entry = seen.setdefault(test.number, [test.title, 0, 0])
                entry[1] += test.passed
                entry[2] += 1
        return sorted(((n, t, p, g) for n, (t, p, g) in seen.items()), key=lambda x: _number_key(x[0]))

    @property
    def graded_count(self) -> int:
        return sum(row.graded for row in self.rows)


def _number(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.4g}"


def _number_key(number: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in number.split("."))


def gradebook_from(found: list[tuple[str, Path]], out: Path) -> Gradebook:
    return Gradebook([read_row(path, name, out) for name, path in found])
