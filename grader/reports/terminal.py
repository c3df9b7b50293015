"""The score table printed at the end of a pytest run.

Plain text, at most 100 columns, no colour codes: it must read the same in a terminal, a CI log
and a pasted bug report. It only reads the result dataclasses; it never computes a grade.
"""

from __future__ import annotations

import textwrap

from grader.judging.results import CheckResult, ExerciseResult, RunResult

WIDTH = 100

# Words, not colours, carry the status (colour-blind readers, logs without ANSI support).
STATUS_WORDS: dict[str, str] = {
    "passed": "passed",
    "public_passed": "public passed",  # hidden checks remain, graded only on the autograder
    "partial": "partial",
    "failed": "failed",
    "not_attempted": "not attempted",
    "timed_out": "timed out",
    "error": "error",
    "skipped": "skipped",
}

_EX_W = 4  # "03" plus room
_POINTS_W = 15  # "100.5 / 100.5"
_STATUS_W = 14  # "not attempted"
NARROWEST = 60  # below this the table would have no room for titles


def _title_width(width: int) -> int:
    return width - _EX_W - _POINTS_W - _STATUS_W - 3 * 2  # columns are joined by two spaces


def format_points(value: float) -> str:
    """7.5 -> "7.5", 10.0 -> "10", 1/3 -> "0.33": short, and no float noise."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line: a title with a newline would break the table
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(ex: str, title: str, points: str, status: str, width: int = WIDTH) -> str:
    title_width = _title_width(width)
    return "  ".join(
        [ex.ljust(_EX_W), _clip(title, title_width).ljust(title_width), points.rjust(_POINTS_W), status]
    ).rstrip()


def render_banner(text: str, width: int = WIDTH) -> list[str]:
    """A boxed notice `width` columns wide: every paragraph wrapped inside the box, nothing cut."""
    inner = width - 4
    lines = []
    for paragraph in text.splitlines() or [""]:
        lines.extend(textwrap.wrap(paragraph, inner, break_on_hyphens=False) or [""])
    edge = "+" + "-" * (width - 2) + "+"
    return [edge, *(f"| {line.ljust(inner)} |" for line in lines), edge]


def _exercise_notes(ex: ExerciseResult, model_id: str, width: int) -> list[str]:
    notes = []
    if ex.expected_source == "local reference":
        notes.append(f"expected values: local reference (no fixtures for {model_id})")
    elif ex.expected_source == "none":
        notes.append("expected values: none available")
    if ex.import_error:
        unindented = [line for line in ex.import_error.strip().splitlines() if line and not line[0].isspace()]
        first = unindented[-1] if unindented else "?"
        notes.append(f"import error in {ex.module}: {first}")
    indent = " " * (_EX_W + 2)
    # Wrapped, not clipped: a note ends with what matters (the error, the file).
    return [line for note in notes
            for line in textwrap.wrap(note, width, initial_indent=indent, subsequent_indent=indent + "  ",
                                      break_on_hyphens=False, break_long_words=True)]


def render_terminal(run: RunResult, report_path: str | None, width: int = WIDTH) -> str:
    """The end-of-run summary: banner, one row per exercise, the total, where the report is.
    Every line fits `width` (the terminal's, at most WIDTH): long text wraps, titles are clipped."""
    width = max(NARROWEST, min(width, WIDTH))
    lines: list[str] = []
    title = " mechgrade "
    lines.append(title.center(width, "="))
    if run.banner:
        lines.extend(render_banner(run.banner, width))
    facts = f"model: {run.model_id} ({run.model_reason}) · device: {run.device} · graded: {run.graded}"
    lines.extend(textwrap.wrap(facts, width, subsequent_indent="  ", break_on_hyphens=False))
    lines.append("")
    lines.append(_row("ex", "title", "points", "status", width))
    lines.append("-" * width)
    for ex in run.exercises:
        points = f"{format_points(ex.points)} / {format_points(ex.max_points)}"
        status = STATUS_WORDS.get(ex.status, ex.status)
        lines.append(_row(ex.exercise, ex.title, points, status, width))
        lines.extend(_exercise_notes(ex, run.model_id, width))
    if not run.exercises:
        lines.append(_clip("(no exercises were graded)", width))
    lines.append("-" * width)
    total = f"{format_points(run.points)} / {format_points(run.max_points)}"
    share = f"{100 * run.points / run.max_points:.0f}%" if run.max_points > 0 else "-"
    hidden = run.hidden_summary()
    lines.append(_row("", "public checks" if hidden else "total", total, share, width))
    if hidden:
        lines.extend(textwrap.wrap(hidden, width, break_on_hyphens=False))
    if run.interrupted:
        lines.append(_clip(f"interrupted: {run.interrupted}", width))
    for fault in run.needs_regrade:  # the environment failed these checks: the score may be too low
        lines.extend(textwrap.wrap(f"NEEDS A RE-GRADE: {fault}", width, subsequent_indent="  ", break_on_hyphens=False))
    for note in run.notes:  # its first lines: the cell, and the error or what was skipped
        for n, part in enumerate(note.splitlines()[:4]):
            text = f"note: {part}" if n == 0 else f"  {part}"
            lines.extend(textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False))
    for error in run.errors:
        # Wrapped, not clipped: an error usually ends with the command that fixes it.
        for n, part in enumerate(error.splitlines()[:12]):
            text = f"error: {part}" if n == 0 else f"  {part}"
            lines.extend(textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False))
    if report_path:
        # Never clipped: the path must stay copyable, so a long one goes on its own line.
        line = f"HTML report: {report_path}"
        lines.extend([line] if len(line) <= width else ["HTML report:", f"  {report_path}"])
    return "\n".join(lines) + "\n"


def render_failed_checks(checks: list[CheckResult]) -> str:
    """A failed test's checks, for pytest's failure section: each failure once, its details
    indented under it, then its hint; checks that were not earned in one line at the end."""
    blocks, unearned = [], []
    for check in checks:
        if check.passed:
            continue
        if check.not_earned:
            unearned.append(check.name)
            continue
        headline, _, details = check.message.partition("\n")
        lines = [f"{check.name}: {headline}" if headline else check.name]
        lines.extend(f"    {line}" for line in details.splitlines())
        if check.hint:
            lines.append(f"    hint: {check.hint}")
        blocks.append("\n".join(lines))
    if unearned:
        blocks.append("not earned until the answer is right: " + ", ".join(unearned))
    return "\n\n".join(blocks)
