"""Gradescope results.json: the shape the autograder spec asks for, always valid JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from gradescope_shape import PER_TEST, TOP_LEVEL, assert_shape
from sample_results import XSS, sample_run

import grader.reports.gradescope as lms
from grader.reports.gradescope import (
    CAPTURED_CAP,
    gradescope_number,
    gradescope_results,
    write_failure_results,
    write_gradescope,
)
from grader.judging.results import RunResult


def _test(doc: dict, number: str) -> dict:
    return next(t for t in doc["tests"] if t["number"] == number)


def test_top_level_has_the_spec_keys_and_types() -> None:
    doc = gradescope_results(sample_run())
    assert_shape(doc, TOP_LEVEL)
    assert doc["output_format"] == "text"
    assert doc["visibility"] == "visible"
    assert doc["stdout_visibility"] == "hidden"
    assert doc["execution_time"] == 43  # 42.6 s, rounded to whole seconds


def test_top_level_score_is_the_total_points() -> None:
    assert gradescope_results(sample_run())["score"] == 3.5


def test_every_test_result_becomes_one_entry_with_the_spec_keys() -> None:
    doc = gradescope_results(sample_run())
    assert len(doc["tests"]) == 6
    for entry in doc["tests"]:
        assert_shape(entry, PER_TEST)
        assert entry["output_format"] == "text"
        assert entry["visibility"] == "visible"


def test_numbers_are_exercise_without_leading_zero_dot_index_within_exercise() -> None:
    numbers = [t["number"] for t in gradescope_results(sample_run())["tests"]]
    assert numbers == ["1.1", "1.2", "1.3", "1.4", "2.1", "2.2"]
    assert gradescope_number("10", 3) == "10.3"
    assert gradescope_number("00", 1) == "0.1"


def test_names_are_exercise_and_test_title() -> None:
    doc = gradescope_results(sample_run())
    assert _test(doc, "1.1")["name"] == "01 · Tokenise a prompt with BOS"
    assert _test(doc, "2.2")["name"] == "02 · Find the induction heads"


def test_status_is_passed_only_for_passed_tests() -> None:
    statuses = [t["status"] for t in gradescope_results(sample_run())["tests"]]
    assert statuses == ["passed", "failed", "failed", "failed", "failed", "failed"]


def test_partial_scores_are_kept_per_test() -> None:
    entry = _test(gradescope_results(sample_run()), "1.2")
    assert (entry["score"], entry["max_score"]) == (1.5, 4.0)


def test_test_output_names_the_status_and_each_failing_check_with_message_and_hint() -> None:
    output = _test(gradescope_results(sample_run()), "1.2")["output"]
    assert output.startswith("failed: 1.5 / 4 points")
    assert "✗ values (weight 2)" in output
    assert "expected: rows sum to 1" in output and "got: columns sum to 1" in output
    assert "12 of 144 elements differ" in output
    assert "hint: Is the pattern transposed?" in output
    assert "✗ shape" not in output and "✗ causal" not in output  # passing checks stay quiet


def test_test_output_explains_not_attempted_timed_out_and_import_errors() -> None:
    doc = gradescope_results(sample_run())
    assert _test(doc, "1.3")["output"].startswith("not attempted: 0 / 2 points")
    assert _test(doc, "1.4")["output"].startswith("timed out: 0 / 2 points")
    assert "SyntaxError: invalid syntax" in _test(doc, "2.1")["output"]


def test_captured_output_is_included_but_capped() -> None:
    run = sample_run()
    run.exercises[0].tests[0].captured = "y" * (CAPTURED_CAP * 5)
    output = _test(gradescope_results(run), "1.1")["output"]
    assert "captured output:" in output
    assert output.count("y") == CAPTURED_CAP
    assert "more characters cut" in output


def test_student_text_is_kept_verbatim_as_text() -> None:
    # Gradescope shows output_format "text" literally, so nothing needs (or gets) HTML-escaped.
    assert XSS in _test(gradescope_results(sample_run()), "1.2")["output"]


def test_run_output_names_model_device_banner_and_expected_value_sources() -> None:
    output = gradescope_results(sample_run())["output"]
    assert "toy-gpt2 (fallback: gpt2-small not in the local cache)" in output
    assert "device: cpu" in output
    assert "GRADED ON THE PRACTICE MODEL 'toy-gpt2'" in output
    assert "exercise 01: expected values from fixtures" in output
    assert "exercise 02: expected values from local reference (no fixtures for toy-gpt2)" in output


def test_an_empty_run_is_still_a_valid_document_that_explains_why() -> None:
    run = RunResult(
        model_id="gpt2-small",
        model_reason="default",
        device="cuda",
        graded="submission",
        interrupted="collection failed",
        errors=["ImportError while importing exercises/03/test_03_x.py"],
    )
    doc = gradescope_results(run)
    assert_shape(doc, TOP_LEVEL)
    assert doc["score"] == 0.0 and doc["tests"] == []
    assert "collection failed" in doc["output"]
    assert "ImportError while importing" in doc["output"]
    json.dumps(doc, allow_nan=False)


def test_non_finite_points_become_zero_so_the_json_stays_valid() -> None:
    run = sample_run()
    run.exercises[0].tests[0].points = float("nan")
    doc = gradescope_results(run)
    assert _test(doc, "1.1")["score"] == 0.0
    json.dumps(doc, allow_nan=False)


def test_write_gradescope_writes_parseable_json_and_creates_folders(tmp_path: Path) -> None:
    path = write_gradescope(sample_run(), tmp_path / "results" / "results.json")
    assert path == tmp_path / "results" / "results.json"
    assert json.loads(path.read_text(encoding="utf-8")) == gradescope_results(sample_run())
    assert os.listdir(path.parent) == ["results.json"]  # no temp file left behind


def test_broken_unicode_in_student_output_still_writes_valid_utf8(tmp_path: Path) -> None:
    run = sample_run()
    run.exercises[0].tests[0].captured = "bad \udcff surrogate and NUL \x00"
    path = write_gradescope(run, tmp_path / "results.json")
    doc = json.loads(path.read_bytes().decode("utf-8"))
    assert "surrogate" in _test(doc, "1.1")["output"]


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "results.json"
    write_failure_results(path, "first")

    def disk_full(fd: int) -> None:  # the new file is written, but cannot be flushed to disk
        raise RuntimeError("disk full")

    monkeypatch.setattr(lms.os, "fsync", disk_full)
    with pytest.raises(RuntimeError):
        write_gradescope(sample_run(), path)
    assert json.loads(path.read_text(encoding="utf-8"))["output"] == "first"
    assert os.listdir(tmp_path) == ["results.json"]


def test_write_failure_results_scores_zero_and_gives_the_reason(tmp_path: Path) -> None:
    path = write_failure_results(tmp_path / "out" / "results.json", "pytest died: SIGKILL", 12.7)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert_shape(doc, TOP_LEVEL)
    assert doc["score"] == 0.0
    assert doc["execution_time"] == 13
    assert doc["output"] == "pytest died: SIGKILL"
    assert doc["tests"] == []
