"""The LMS files: `--gradescope-json` in the Gradescope shape, always written, and `--junitxml`."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from graded_project import RESULTS, GradedProject, new_project
from gradescope_shape import assert_gradescope_shape

from grader.grading import run_folder

CHECKS = '''
    @pytest.mark.points(2)
    def test_add(student, grade):
        """add() adds"""
        grade.compare("add(1, 2)", student.add(1, 2), 3)

    def test_sub(student, grade):
        grade.compare("sub(3, 1)", student.sub(3, 1), 2)
'''
STUB = '''
    def add(a, b):
        return a + b

    def sub(a, b):
        return a + b
'''
def test_results_json_has_the_gradescope_shape(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=STUB)
    project.run().assert_outcomes(passed=1, failed=1)
    document = project.results()
    assert_gradescope_shape(document)
    assert document["score"] == 2.0
    assert [(t["name"], t["number"], t["score"], t["max_score"], t["status"]) for t in document["tests"]] == [
        ("01 · add() adds", "1.1", 2.0, 2.0, "passed"),
        ("01 · test_sub", "1.2", 0.0, 1.0, "failed"),
    ]
    assert document["tests"][0]["output"] == "passed: 2 / 2 points"
    assert "expected 2, got 4" in document["tests"][1]["output"]
    assert "total: 2 / 3 points" in document["output"]


def test_results_json_is_written_where_asked_creating_folders(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=STUB)
    project.run("--gradescope-json", "deep/er/results.json")
    assert_gradescope_shape(project.results("deep/er/results.json"))


def test_results_json_is_written_when_the_check_file_does_not_collect(make_project) -> None:
    project: GradedProject = make_project("def test_add(student:\n    pass\n", stub=STUB)
    result = project.run()
    assert result.ret == pytest.ExitCode.INTERRUPTED  # collection errors stop pytest
    document = project.results()
    assert_gradescope_shape(document)
    assert document["score"] == 0.0
    assert document["tests"] == []
    assert document["output"].startswith("grading could not start: could not collect exercises/01/test_01_demo.py")
    assert "SyntaxError" in document["output"]


def test_results_json_keeps_the_other_exercises_when_one_check_file_does_not_collect(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=STUB)
    project.add_exercise("02", "def test_broken(student:\n    pass\n", topic="other")
    project.run("--continue-on-collection-errors")
    document = project.results()
    assert_gradescope_shape(document)
    assert [t["number"] for t in document["tests"]] == ["1.1", "1.2"]
    assert document["score"] == 2.0
    assert "error: could not collect exercises/02/test_02_other.py" in document["output"]


def test_results_json_is_written_when_no_graded_test_is_collected(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=STUB)
    project.write("exercises/notes/test_helpers.py", "def test_plain():\n    assert True\n")
    project.run(paths=("exercises/notes",)).assert_outcomes(passed=1)
    document = project.results()
    assert_gradescope_shape(document)
    assert (document["score"], document["tests"]) == (0.0, [])
    assert document["output"] == "grading could not start: no graded checks were collected"


def test_results_json_is_written_when_nothing_is_collected_at_all(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=STUB)
    (project.root / "empty").mkdir()
    result = project.run(paths=("empty",))
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert_gradescope_shape(project.results())


def test_a_process_that_dies_leaves_its_results_json_in_its_run_folder_holding_the_tests_that_ran(tmp_path) -> None:
    """Never half a run in the destination: `mechgrade grade` moves this file into place, saying
    that the grading process died (tests/test_private_results.py)."""
    project = new_project(
        tmp_path,
        CHECKS
        + '''
    def test_zz_dies(student):
        student.die()
''',
        stub=STUB + "\n    def die():\n        import os\n        os._exit(1)\n",
    )
    result = project.run(timeout=60)
    assert result.ret == 1
    assert not (project.root / RESULTS).exists()
    [folder] = [p for p in (project.root / RESULTS).parent.iterdir() if p.name.startswith(run_folder.PREFIX)]
    document = json.loads((folder / "results.json").read_text())
    assert_gradescope_shape(document)
    assert [(t["number"], t["score"]) for t in document["tests"]] == [("1.1", 2.0), ("1.2", 0.0), ("1.3", 0.0)]
    assert document["score"] == 2.0
    assert "not run yet" in document["tests"][2]["output"]


def test_junitxml_names_testcases_by_function_with_the_exercise_path_as_classname(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=STUB)
    project.run("--junitxml", "out/junit.xml")
    cases = ET.parse(project.root / "out" / "junit.xml").getroot().iter("testcase")
    found = {case.get("name"): case for case in cases}
    assert set(found) == {"test_add", "test_sub"}
    assert found["test_add"].get("classname") == "exercises.01.test_01_demo"
    assert found["test_add"].find("failure") is None
    failure = found["test_sub"].find("failure")
    assert failure is not None
    assert "expected 2, got 4" in (failure.get("message", "") + (failure.text or ""))


def test_results_json_is_valid_json_with_hostile_student_output(make_project) -> None:
    project: GradedProject = make_project(
        CHECKS,
        stub=STUB.replace("return a + b\n\n", "print('\\x00\\udcff<b>' * 3)\n        return a + b\n\n", 1),
    )
    project.run()
    text = (project.root / "out" / "results.json").read_text(encoding="utf-8")
    document = json.loads(text)
    assert_gradescope_shape(document)
    assert "\x00" not in text


def test_a_report_that_cannot_be_written_is_said_in_the_terminal_and_results_json(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=STUB)
    blocked = project.root / "report-is-a-folder"
    blocked.mkdir()
    result = project.run("--report-html", str(blocked))
    result.stdout.fnmatch_lines(["error: could not write the HTML report*"])
    assert "could not write the HTML report" in project.results()["output"]
