"""An untouched stub (it still raises NotImplementedError) is "not attempted", not an error."""

from __future__ import annotations

from graded_project import GradedProject

CHECKS = '''
    @pytest.mark.points(2)
    def test_add(student, grade):
        """add() adds two numbers"""
        grade.compare("add(1, 2)", student.add(1, 2), 3)
'''
STUB = '''
    def add(a, b):
        """Return a + b."""
        raise NotImplementedError("write add()")
'''


def test_an_untouched_stub_scores_zero_points(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=STUB)
    project.run().assert_outcomes(failed=1)
    entry = project.test_entry("add() adds two numbers")
    assert (entry["score"], entry["max_score"]) == (0.0, 2.0)
    assert project.results()["score"] == 0.0


def test_an_untouched_stub_is_reported_as_not_attempted_in_results_json(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=STUB)
    project.run()
    entry = project.test_entry("add() adds two numbers")
    assert entry["status"] == "failed"  # Gradescope knows only passed and failed
    assert entry["output"].startswith("not attempted: 0 / 2 points\n")
    assert "not attempted: the stub still raises NotImplementedError" in entry["output"]


def test_an_untouched_stub_shows_one_line_and_no_traceback_in_the_terminal(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=STUB)
    result = project.run()
    lines = result.outlines
    header = next(i for i, line in enumerate(lines) if line.startswith("_") and "test_add" in line)
    following = lines[header + 1 :]
    end = next(i for i, line in enumerate(following) if line.startswith(("=", "_")))
    assert [line for line in following[:end] if line.strip()] == [
        "not attempted: the stub still raises NotImplementedError (write add())"
    ]
    text = result.stdout.str()
    assert "Traceback" not in text
    assert "raise NotImplementedError" not in text
    assert "/demo.py:" not in text and " demo.py:" not in text  # no file:line of a frame
    result.stdout.fnmatch_lines(["01 *Demo exercise*0 / 2*not attempted"])


def test_a_stub_that_is_partly_done_is_graded_test_by_test(make_project) -> None:
    project: GradedProject = make_project(
        CHECKS
        + '''
    def test_sub(student, grade):
        grade.compare("sub(3, 1)", student.sub(3, 1), 2)
''',
        stub=STUB + "\n    def sub(a, b):\n        return a - b\n",
    )
    project.run().assert_outcomes(passed=1, failed=1)
    assert project.test_entry("test_sub")["status"] == "passed"
    assert project.test_entry("add() adds")["output"].startswith("not attempted")
    assert project.results()["score"] == 1.0


def test_a_stub_that_a_module_fixture_calls_reads_as_not_attempted_like_the_others(make_project) -> None:
    """Exercise 01 boots the student's model once, in a module fixture: an untouched stub raises
    there, in the setup of the first check. It still counts as a failed check, not a setup error
    (a stub run's summary said "61 failed, 1 error")."""
    project: GradedProject = make_project(
        """
        @pytest.fixture(scope="module")
        def added(student):
            return student.add(1, 2)

        @pytest.mark.points(2)
        def test_add(added, grade):
            \"\"\"add() adds two numbers\"\"\"
            grade.compare("add(1, 2)", added, 3)

        @pytest.mark.points(1)
        def test_add_again(added, grade):
            grade.compare("add(1, 2)", added, 3)
        """,
        stub=STUB,
    )
    result = project.run()
    result.assert_outcomes(failed=2, errors=0)
    assert project.test_entry("add() adds two numbers")["output"].startswith("not attempted: 0 / 2 points\n")
