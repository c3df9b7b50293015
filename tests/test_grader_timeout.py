"""A check that runs too long fails as "timed out", and the run goes on to grade the rest.

Runs in a subprocess: the limit is a SIGALRM timer, and a grader bug here would hang the suite
(the subprocess has its own deadline).
"""

from __future__ import annotations

import pytest
from graded_project import GradedProject, new_project

CHECKS = '''
    @pytest.mark.points(2)
    def test_slow(student):
        """slow() returns"""
        student.slow()

    @pytest.mark.points(3)
    def test_add(student, grade):
        """add() adds, after a check that timed out"""
        grade.compare("add(1, 2)", student.add(1, 2), 3)
'''
# Catching Exception must not swallow the grader's time limit.
STUB = '''
    import time

    def slow():
        while True:
            try:
                time.sleep(10)
            except Exception:
                pass

    def add(a, b):
        return a + b
'''
HANGS_ON_IMPORT = '''
    while True:
        try:
            pass
        except Exception:
            pass
'''


@pytest.fixture(scope="module")
def timed_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[GradedProject, pytest.RunResult]:
    """One run shared by this module's tests: a loop in 01, an import that never ends in 02."""
    project = new_project(tmp_path_factory.mktemp("timeout"), CHECKS, stub=STUB)
    project.add_exercise(
        "02",
        '''
        def test_anything(student):
            assert student is not None

        def test_second(student):
            assert student is not None
        ''',
        stub=HANGS_ON_IMPORT,
        topic="hang",
        title="A module that never finishes importing",
    )
    return project, project.run("--check-timeout", "1", timeout=60)


def test_a_loop_that_catches_exception_still_fails_as_timed_out(timed_out) -> None:
    project, result = timed_out
    result.stdout.fnmatch_lines(["timed out: this check timed out after 1 s (a slow loop, or code waiting forever?)"])
    entry = project.test_entry("slow() returns")
    assert (entry["score"], entry["max_score"], entry["status"]) == (0.0, 2.0, "failed")
    assert entry["output"].startswith("timed out: 0 / 2 points\n")


def test_a_timed_out_check_shows_no_traceback(timed_out) -> None:
    _, result = timed_out
    assert "Traceback" not in result.stdout.str()
    assert "time.sleep" not in result.stdout.str()


def test_checks_after_a_timed_out_one_still_run_and_score(timed_out) -> None:
    project, result = timed_out
    assert project.test_entry("add() adds")["score"] == 3.0
    assert project.test_entry("add() adds")["status"] == "passed"
    result.stdout.fnmatch_lines(["01 *Demo exercise*3 / 5*partial", "*total*3 / 7*43%"])
    assert project.results()["score"] == 3.0


def test_a_module_that_never_finishes_importing_times_out_and_scores_zero(timed_out) -> None:
    project, result = timed_out
    hang = project.test_entry("test_anything")
    assert (hang["score"], hang["status"]) == (0.0, "failed")
    assert "importing hang.py timed out after 1 s" in hang["output"]
    assert result.ret == 1


def test_every_test_of_a_module_that_never_finishes_importing_reports_the_timeout(timed_out) -> None:
    project, result = timed_out
    second = project.test_entry("test_second")
    assert second["score"] == 0.0
    assert "importing hang.py timed out after 1 s" in second["output"]
    assert "AssertionError" not in result.stdout.str()


def test_student_code_run_by_a_check_fixture_is_timed_out_too(make_project) -> None:
    """In-process: the student code sleeps a finite 2 s, so a grader without the limit only runs slow."""
    project: GradedProject = make_project(
        '''
        @pytest.fixture
        def prepared(student):
            return student.prepare()

        def test_prepared(prepared):
            assert prepared == 1

        def test_after(student):
            assert student.add(1, 2) == 3
        ''',
        stub="import time\n\ndef prepare():\n    time.sleep(2)\n    return 1\n\ndef add(a, b):\n    return a + b\n",
    )
    result = project.run("--check-timeout", "0.5")
    result.stdout.fnmatch_lines(["*timed out after 0.5 s*"])
    assert project.test_entry("test_prepared")["score"] == 0.0
    assert project.test_entry("test_after")["score"] == 1.0
