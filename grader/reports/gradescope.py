"""Gradescope autograder `results.json`, built from a RunResult.

Spec: https://gradescope-autograders.readthedocs.io/en/latest/specs/ . The document is written
atomically, so an autograder that dies half-way never leaves a truncated file; a wrapper that sees
the pytest process die calls `write_failure_results` instead.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from grader.reports.terminal import STATUS_WORDS, format_points
from grader.judging.results import CheckResult, ExerciseResult, RunResult, TestResult, cap

# Gradescope shows these verbatim; long captured output would bury the failing checks.
CAPTURED_CAP = 2_000
TEST_OUTPUT_CAP = 8_000
RUN_OUTPUT_CAP = 8_000


def _clean(text: str) -> str:
    """Drop what JSON consumers choke on: lone surrogates and NUL bytes from student output."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def _number(value: float) -> float:
    """Scores are plain finite floats: NaN or inf would make the JSON invalid."""
    return round(float(value), 4) if math.isfinite(value) else 0.0


def gradescope_number(exercise: str, index: int) -> str:
    """Exercise "03", first test -> "3.1" (Gradescope sorts and shows this)."""
    ex = (exercise.lstrip("0") or "0") if exercise.isdigit() else exercise
    return f"{ex}.{index}"


def _test_output(test: TestResult, ex: ExerciseResult) -> str:
    word = STATUS_WORDS.get(test.status, test.status)
    lines = [f"{word}: {format_points(test.points)} / {format_points(test.max_points)} points"]
    if ex.import_error:
        lines.append(f"{ex.module} did not import:\n{ex.import_error.strip()}")
    if test.output:
        lines.append(test.output.rstrip())
    for check in test.checks:
        if check.passed:
            continue
        lines.append(f"✗ {check.name} (weight {format_points(check.weight)})")
        if check.expected is not None or check.got is not None:
            lines.append(f"  expected: {check.expected}\n  got: {check.got}")
        if check.message:
            lines.append("  " + check.message.rstrip().replace("\n", "\n  "))
        if check.hint:
            lines.append(f"  hint: {check.hint}")
    if test.captured:
        lines.append("captured output:\n" + cap(test.captured.rstrip(), CAPTURED_CAP))
    return _clean(cap("\n".join(lines), TEST_OUTPUT_CAP))


def _test_entry(test: TestResult, ex: ExerciseResult, index: int) -> dict[str, Any]:
    return {
        "name": f"{ex.exercise} · {test.title or test.name}",
        "number": gradescope_number(ex.exercise, index),
        "score": _number(test.points),
        "max_score": _number(test.max_points),
        "status": "passed" if test.status == "passed" else "failed",
        "output": _test_output(test, ex),
        "output_format": "text",
        # A hidden check's name, inputs and values reach the student only once grades are published.
        "visibility": "after_published" if test.hidden else "visible",
        # Gradescope keeps extra_data as it is; `mechgrade merge-results` reads it to rank the
        # class's mistakes: the mistake each failed check named, or the hint it showed.
        "extra_data": {"exercise": ex.exercise, "status": test.status,
                       "hints": [_failure(c) for c in test.checks if not c.passed and c.hint and not c.not_earned]},
    }


def _failure(check: CheckResult) -> dict[str, Any]:
    """A failed check for the class page: its hint, the mistake it named (if any), and whether it
    is a note (worth nothing: it names the root cause of this test's failures)."""
    entry: dict[str, Any] = {"check": check.name, "hint": check.hint}
    if check.mistake:
        entry["mistake"] = check.mistake
    if check.weight == 0:
        entry["note"] = True
    return entry


def _run_output(run: RunResult) -> str:
    lines = [f"NEEDS A RE-GRADE: {fault}" for fault in run.needs_regrade]
    if run.banner:
        lines.append(f"!! {run.banner}")
    lines.append(f"model: {run.model_id} ({run.model_reason})")
    lines.append(f"device: {run.device}")
    for ex in run.exercises:
        if ex.expected_source == "fixtures":
            source = "fixtures"
        elif ex.expected_source == "local reference":
            source = f"local reference (no fixtures for {run.model_id})"
        else:
            source = "none available"
        lines.append(f"exercise {ex.exercise}: expected values from {source}")
    total = f"{format_points(run.points)} / {format_points(run.max_points)}"
    lines.append(f"total: {total} points")
    if not run.exercises:
        lines.append("No exercise was graded.")
    if run.interrupted:
        lines.append(f"The run stopped early: {run.interrupted}")
    for note in run.notes:
        lines.append(f"note: {note}")
    for error in run.errors:
        lines.append(f"error: {error}")
    return _clean(cap("\n".join(lines), RUN_OUTPUT_CAP))


def _document(
    score: float, execution_time: float, output: str, tests: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "score": _number(score),
        "execution_time": int(round(execution_time)) if math.isfinite(execution_time) else 0,
        "output": output,
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def gradescope_results(run: RunResult) -> dict[str, Any]:
    """The results.json document: one test entry per TestResult, numbered "3.1", "3.2", ..."""
    tests = [
        _test_entry(test, ex, index)
        for ex in run.exercises
        for index, test in enumerate(ex.tests, start=1)
    ]
    return _document(run.points, run.execution_time, _run_output(run), tests)


def write_json_atomic(document: dict[str, Any], path: Path) -> Path:
    return write_text_atomic(json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n", path)


def write_text_atomic(text: str, path: Path) -> Path:
    """Write `text` to a new file and rename it over `path`: a reader never sees half a file, and
    a link someone left at `path` is replaced, never followed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file lives beside the target so os.replace is a rename on one filesystem.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private, but the LMS may read it as another user (POSIX only).
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_gradescope(run: RunResult, path: Path) -> Path:
    """Write results.json for `run` atomically; returns the path written."""
    return write_json_atomic(gradescope_results(run), path)


def write_failure_results(path: Path, reason: str, execution_time: float = 0) -> Path:
    """results.json for a grader that could not finish at all: score 0 and the reason."""
    document = _document(0.0, execution_time, _clean(cap(reason, RUN_OUTPUT_CAP)), [])
    return write_json_atomic(document, path)


def add_error(path: Path, error: str) -> Path:
    """Add a line to results.json's output for what went wrong after its grading process wrote it
    (its HTML report could not be moved into place, say)."""
    document = json.loads(path.read_text())
    document["output"] = _clean(cap(f"{document.get('output', '')}\nerror: {error}", RUN_OUTPUT_CAP))
    return write_json_atomic(document, path)


def record_abnormal_end(path: Path, reason: str, execution_time: float) -> Path:
    """The grading process died or was stopped: keep the results.json it rewrote after its last
    finished check (checks that had not finished are already there with 0 points) and say why;
    write a failure document where it left none."""
    if not path.exists():
        return write_failure_results(path, reason, execution_time)
    document = json.loads(path.read_text())
    document["output"] = _clean(cap(f"{reason}; checks that had not finished score 0.\n{document.get('output', '')}", RUN_OUTPUT_CAP))
    document["execution_time"] = int(execution_time)
    return write_json_atomic(document, path)
