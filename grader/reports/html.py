"""The HTML report: one self-contained file, safe to open, readable with colour blindness.

Self-contained: no network, no scripts, images inline as base64 PNG (a Content-Security-Policy in
the page enforces it). Safe: the student's output is untrusted, so jinja2 escapes everything.
Readable: every status is a word and a symbol, colours are from the Okabe-Ito palette and only
repeat what the words say. Rendering reads the result dataclasses; it never computes a grade.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from grader.judging.results import CheckResult, FigureArtifact, RunResult
from grader.reports.gradescope import write_text_atomic
from grader.reports.terminal import STATUS_WORDS, format_points

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class StatusStyle:
    symbol: str
    word: str
    background: str
    foreground: str


# Okabe-Ito colours; text colour chosen for WCAG AA contrast (tests check it).
STATUS_STYLES: dict[str, StatusStyle] = {
    "passed": StatusStyle("✓", STATUS_WORDS["passed"], "#0072B2", "#FFFFFF"),
    "public_passed": StatusStyle("◐", STATUS_WORDS["public_passed"], "#56B4E9", "#000000"),
    "partial": StatusStyle("◐", STATUS_WORDS["partial"], "#56B4E9", "#000000"),
    "failed": StatusStyle("✗", STATUS_WORDS["failed"], "#E69F00", "#000000"),
    "error": StatusStyle("⚠", STATUS_WORDS["error"], "#D55E00", "#000000"),
    "timed_out": StatusStyle("⏱", STATUS_WORDS["timed_out"], "#F0E442", "#000000"),
    "not_attempted": StatusStyle("–", STATUS_WORDS["not_attempted"], "#DDDDDD", "#000000"),
    "skipped": StatusStyle("–", STATUS_WORDS["skipped"], "#DDDDDD", "#000000"),
    # Rows of a check table that are neither passed nor failed checks (see Grade.guard, Grade.note).
    "not_earned": StatusStyle("–", "not earned", "#DDDDDD", "#000000"),
    "note": StatusStyle("ℹ", "note", "#FFFFFF", "#000000"),
}


def check_status(check: CheckResult) -> str:
    if check.passed:
        return "passed"
    if check.not_earned:
        return "not_earned"
    return "note" if check.weight == 0 else "failed"
_UNKNOWN = StatusStyle("?", "unknown", "#DDDDDD", "#000000")


def status_style(status: str) -> StatusStyle:
    return STATUS_STYLES.get(status, _UNKNOWN)


def figure_groups(figures: Sequence[FigureArtifact]) -> list[list[FigureArtifact]]:
    """Figures sharing a group go in one row (student | reference); ungrouped ones stand alone."""
    rows: list[list[FigureArtifact]] = []
    by_group: dict[str, list[FigureArtifact]] = {}
    for figure in figures:
        if not figure.group:
            rows.append([figure])
        elif figure.group in by_group:
            by_group[figure.group].append(figure)
        else:
            by_group[figure.group] = [figure]
            rows.append(by_group[figure.group])
    return rows


def _pretty(value: Any) -> str:
    """Provenance and environment values: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _percent(points: float, max_points: float) -> float:
    if max_points <= 0 or not math.isfinite(points) or not math.isfinite(max_points):
        return 0.0
    return max(0.0, min(100.0, 100.0 * points / max_points))


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # always on: select_autoescape would miss the .j2 suffix
        undefined=jinja2.StrictUndefined,  # a typo in the template fails loudly, not blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["points"] = format_points
    env.filters["pretty"] = _pretty
    env.globals.update(
        status_style=status_style,
        check_status=check_status,
        styles=STATUS_STYLES,
        figure_groups=figure_groups,
        percent=_percent,
    )
    return env


def render_html(run: RunResult) -> str:
    """The whole report as one HTML string."""
    return _environment().get_template("report.html.j2").render(run=run)


def write_html(run: RunResult, path: Path) -> Path:
    """Render `run` to `path` (parent folders created); returns the path."""
    return write_text_atomic(render_html(run), path)
