"""The class page: one self-contained HTML file (no scripts, no network), like the student report.

It is the page an instructor reads to decide what to re-teach: the class's misconceptions, each
once, ranked by how many students made them (grader.classroom.misconceptions); each exercise's
median and spread, and the one most left unattempted (grader.classroom.by_exercise); the score
distribution; the pass rate of every check; and every student's line with a link to their report. Everything in it comes from results.json files (grader.classroom.gradebook), so it is untrusted
text: jinja2 escapes all of it.
"""

from __future__ import annotations

import datetime as dt
import statistics
from pathlib import Path

import jinja2

from grader.classroom.by_exercise import by_exercise, most_left_alone
from grader.classroom.gradebook import Gradebook
from grader.classroom.misconceptions import misconceptions
from grader.reports.gradescope import write_text_atomic

TEMPLATES = Path(__file__).parent / "templates"


def render_class(book: Gradebook, title: str = "") -> str:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["points"] = lambda v: f"{v:g}" if float(v).is_integer() else f"{v:.2f}"
    graded = [book.percent(row) for row in book.rows if row.graded]
    distribution = book.distribution()
    named, unnamed = misconceptions(book.rows)
    exercises = by_exercise(book)
    return environment.get_template("class.html.j2").render(
        book=book,
        title=title or "mechgrade: the class",
        made=dt.datetime.now().astimezone().isoformat(timespec="minutes"),
        mean=statistics.fmean(graded) if graded else 0.0,
        median=statistics.median(graded) if graded else 0.0,
        distribution=distribution,
        tallest=max((n for _, n in distribution), default=0) or 1,
        pass_rates=book.pass_rates(),
        misconceptions=named,
        unnamed=unnamed,
        exercises=exercises,
        left_alone=most_left_alone(exercises),
        not_completed=[row for row in book.rows if row.status != "completed"],
    )


def write_gradebook(book: Gradebook, out: Path, title: str = "") -> tuple[Path, Path]:
    """grades.csv and class.html in `out`, each written atomically."""
    csv_path = write_text_atomic(book.csv_text(), out / "grades.csv")
    html_path = write_text_atomic(render_class(book, title), out / "class.html")
    return csv_path, html_path
