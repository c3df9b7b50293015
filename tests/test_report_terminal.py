"""The end-of-run score table: compact, plain text, at most 100 columns."""

from __future__ import annotations

import re

import pytest
from sample_results import sample_run

from grader.judging import results
from grader.reports.terminal import WIDTH, format_points, render_terminal
from grader.judging.results import ExerciseResult, RunResult


def _lines(text: str) -> list[str]:
    return text.splitlines()


def test_every_line_fits_in_100_columns_even_with_long_titles() -> None:
    run = sample_run()
    run.exercises[0].title = "A very long exercise title " * 10
    run.model_reason = "fallback: " + "gpt2-small could not be loaded because " * 5
    run.banner = "word " * 80
    run.errors = ["x" * 300]
    text = render_terminal(run, "reports/report.html")
    assert WIDTH == 100
    assert all(len(line) <= WIDTH for line in _lines(text))


def test_one_row_per_exercise_shows_number_title_points_and_status() -> None:
    text = render_terminal(sample_run(), None)
    row01 = next(line for line in _lines(text) if line.startswith("01"))
    row02 = next(line for line in _lines(text) if line.startswith("02"))
    assert "Tokens & attention <basics>" in row01
    assert "3.5 / 10" in row01 and row01.endswith("partial")
    assert "Induction heads" in row02
    assert "0 / 6" in row02 and row02.endswith("error")


def test_total_line_shows_points_max_and_share() -> None:
    text = render_terminal(sample_run(), None)
    total = next(line for line in _lines(text) if "total" in line)
    assert re.search(r"3\.5 / 16\s+22%$", total)


def test_banner_is_framed_above_the_table() -> None:
    run = sample_run()
    lines = _lines(render_terminal(run, None))
    banner_line = next(i for i, line in enumerate(lines) if "GRADED ON THE PRACTICE MODEL 'toy-gpt2'" in line)
    header_line = next(i for i, line in enumerate(lines) if line.startswith("ex "))
    assert banner_line < header_line
    assert lines[banner_line - 1] == "+" + "-" * (WIDTH - 2) + "+"
    assert lines[banner_line].startswith("| ") and lines[banner_line].endswith(" |")


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_at_the_terminals_width_nothing_wraps_and_nothing_of_the_banner_is_cut(columns: int) -> None:
    run = sample_run()
    run.model_reason = "fallback: " + "gpt2-small is not in the local Hugging Face cache and the hub did not answer " * 2
    text = render_terminal(run, "reports/report.html", width=columns)
    lines = _lines(text)
    shown = min(columns, WIDTH)
    assert all(len(line) <= shown for line in lines), [line for line in lines if len(line) > shown]
    box = [line for line in lines if line.startswith(("+-", "| "))]
    assert len({len(line) for line in box}) == 1 and len(box[0]) == shown  # a straight box, edge to edge
    inside = " ".join(line.strip("| ") for line in box if line.startswith("| "))
    assert " ".join(inside.split()) == " ".join(run.banner.split())  # every word of it, in order
    facts = " ".join(line.strip() for line in lines if "model:" in line or line.startswith("  "))
    assert "the hub did not answer" in facts and "graded: exercises" in facts  # wrapped, not cut
    assert "!!" not in text


def test_no_banner_means_no_frame() -> None:
    run = sample_run()
    run.banner = None
    assert "+--" not in render_terminal(run, None)


def test_local_reference_exercise_says_where_its_expected_values_came_from() -> None:
    text = render_terminal(sample_run(), None)
    assert "expected values: local reference (no fixtures for toy-gpt2)" in text
    # Only exercise 02 uses the local reference: the note appears once, right under its row.
    lines = _lines(text)
    assert text.count("local reference") == 1
    row02 = next(i for i, line in enumerate(lines) if line.startswith("02"))
    assert "local reference" in lines[row02 + 1]


def test_import_error_is_summarised_in_one_line() -> None:
    text = render_terminal(sample_run(), None)
    assert "import error in exercises/02/induction.py: SyntaxError: invalid syntax" in text
    assert "Traceback" not in text


def test_report_path_is_printed_when_given() -> None:
    text = render_terminal(sample_run(), "reports/report.html")
    assert text.rstrip().endswith("HTML report: reports/report.html")
    assert "HTML report" not in render_terminal(sample_run(), None)


def test_a_long_report_path_is_never_clipped() -> None:
    path = "/very/long/" + "folder/" * 20 + "report.html"
    assert path in render_terminal(sample_run(), path)


def test_interruption_and_errors_are_reported() -> None:
    run = sample_run()
    run.interrupted = "KeyboardInterrupt"
    run.errors = ["collection failed in exercises/03"]
    text = render_terminal(run, None)
    assert "interrupted: KeyboardInterrupt" in text
    assert "error: collection failed in exercises/03" in text


def test_output_is_plain_text_without_colour_codes() -> None:
    assert "\x1b[" not in render_terminal(sample_run(), "r.html")


def test_an_empty_run_still_renders_a_total() -> None:
    run = RunResult(model_id="toy-gpt2", model_reason="default", device="cpu", graded="exercises")
    text = render_terminal(run, None)
    assert "no exercises were graded" in text
    assert re.search(r"total\s+0 / 0\s+-$", text, re.MULTILINE)


def test_newlines_in_a_title_do_not_break_the_table() -> None:
    # Imported through the module so pytest does not try to collect TestResult as a test class.
    test = results.TestResult("n", "05", "t", "t", max_points=1.0, points=1.0, status="passed")
    ex = ExerciseResult("05", "two\nlines", "exercises/05/x.py", tests=[test])
    run = RunResult("toy-gpt2", "default", "cpu", "exercises", exercises=[ex])
    row = next(line for line in _lines(render_terminal(run, None)) if line.startswith("05"))
    assert "two lines" in row and row.endswith("passed")


def test_points_are_formatted_short() -> None:
    assert format_points(10.0) == "10"
    assert format_points(7.5) == "7.5"
    assert format_points(1 / 3) == "0.33"
    assert format_points(0.0) == "0"
    assert format_points(-0.0001) == "0"
