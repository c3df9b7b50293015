"""`--submission DIR` grades a submitted folder; whatever the submission does, the student sees
their own code's errors (never the grader's frames) and every other exercise is still graded."""

from __future__ import annotations

import re

import pytest
from graded_project import GradedProject

ADD_CHECKS = '''
    @pytest.mark.points(2)
    def test_add(student, grade):
        """add() adds"""
        grade.compare("add(1, 2)", student.add(1, 2), 3)
'''
CORRECT = "def add(a, b):\n    return a + b\n"
UNTOUCHED = "def add(a, b):\n    raise NotImplementedError\n"
GRADER_FRAMES = ("grader/", "plugin.py", "session.py", "submission.py", "_pytest", "pluggy", "test_01_demo.py:")


def _project(make_project, checks: str = ADD_CHECKS) -> GradedProject:
    return make_project(checks, stub=UNTOUCHED)


def _assert_no_grader_frames(text: str) -> None:
    for marker in GRADER_FRAMES:
        assert marker not in text, f"{marker!r} shown to the student:\n{text}"


def _failure_section(lines: list[str], test: str) -> str:
    """The text under a test's `____ test ____` header in pytest's FAILURES/ERRORS, up to the next header."""
    start = next(i for i, line in enumerate(lines) if line.startswith("_") and f" {test} " in line)
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("_", "=")) and lines[i].endswith(("_", "="))),
        len(lines),
    )
    return "\n".join(lines[start + 1 : end])


# ---- where the graded module is found ----


def test_a_submission_laid_out_like_exercises_is_graded(make_project) -> None:
    project = _project(make_project)
    project.write("submission/01/demo.py", CORRECT)
    result = project.run("--submission", "submission")
    result.assert_outcomes(passed=1)
    assert project.test_entry("add() adds")["score"] == 2.0
    result.stdout.fnmatch_lines([f"mechgrade: grading {project.root / 'submission'} on toy-gpt2*"])


def test_a_flat_submission_is_graded(make_project) -> None:
    project = _project(make_project)
    project.write("flat/demo.py", CORRECT)
    project.run("--submission", "flat").assert_outcomes(passed=1)
    assert project.results()["score"] == 2.0


def test_a_submission_does_not_fall_back_to_the_stub_in_exercises(make_project) -> None:
    project = make_project(ADD_CHECKS, stub=CORRECT)
    project.write("submission/README.txt", "no code here")
    project.run("--submission", "submission").assert_outcomes(errors=1)
    entry = project.test_entry("add() adds")
    assert entry["score"] == 0.0
    assert "demo.py not found: the graded folder must contain it" in entry["output"]


def test_a_missing_submission_folder_is_a_usage_error(make_project) -> None:
    project = _project(make_project)
    result = project.run("--submission", "nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--submission nowhere: no such folder*"])


# ---- a module that does not import ----


def test_a_syntax_error_scores_zero_on_that_exercise_and_shows_file_and_line(make_project) -> None:
    project = _project(make_project)
    project.add_exercise(
        "02",
        '''
        @pytest.mark.points(3)
        def test_sub(student, grade):
            grade.compare("sub(3, 1)", student.sub(3, 1), 2)
        ''',
        topic="calc",
        title="Second exercise",
    )
    project.write("submission/01/demo.py", "def add(a, b):\n    return a +* b\n")
    project.write("submission/02/calc.py", "def sub(a, b):\n    return a - b\n")
    result = project.run("--submission", "submission")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "your module could not be imported, so this exercise scores 0:",
            "SyntaxError in demo.py, line 2: invalid syntax",
            "        return a +* b",
        ]
    )
    entry = project.test_entry("add() adds")
    assert entry["score"] == 0.0
    assert "SyntaxError in demo.py, line 2: invalid syntax" in entry["output"]
    # the other exercise is graded as usual
    assert project.test_entry("test_sub")["score"] == 3.0
    assert project.results()["score"] == 3.0
    result.stdout.fnmatch_lines(["01 *Demo exercise*0 / 2*error", "02 *Second exercise*3 / 3*passed"])


def test_the_score_table_names_the_syntax_error(make_project) -> None:
    project = _project(make_project)
    project.write("submission/01/demo.py", "def add(a, b):\n    return a +* b\n")
    result = project.run("--submission", "submission")
    table = " ".join(line.strip() for line in result.outlines)  # a long note wraps onto indented lines
    assert re.search(r"import error in \S*demo\.py: SyntaxError in demo\.py, line 2: invalid syntax", table), table


def test_an_error_while_importing_shows_only_the_students_frames(make_project) -> None:
    project = _project(make_project)
    project.write(
        "submission/01/demo.py",
        """
        def setup():
            return {}["missing"]

        TABLE = setup()

        def add(a, b):
            return a + b
        """,
    )
    result = project.run("--submission", "submission")
    result.assert_outcomes(errors=1)
    section = _failure_section(result.outlines, "test_add")
    assert "importing demo.py failed:" in section
    assert 'File "demo.py", line 4, in <module>' in section
    assert 'File "demo.py", line 2, in setup' in section
    assert "KeyError: 'missing'" in section
    _assert_no_grader_frames(section)


# ---- student code that raises or exits ----

RAISES = '''
    def add(a, b):
        return _helper(a, b)

    def _helper(a, b):
        raise ValueError("I give up")

    def quit():
        import sys
        sys.exit(3)
'''


def test_an_error_in_student_code_shows_only_student_frames(make_project) -> None:
    project = _project(make_project)
    project.write("submission/01/demo.py", RAISES)
    result = project.run("--submission", "submission")
    result.assert_outcomes(failed=1)
    section = _failure_section(result.outlines, "test_add")
    assert section.splitlines() == [
        "your add raised ValueError: I give up",
        '  File "demo.py", line 2, in add',
        "    return _helper(a, b)",
        '  File "demo.py", line 5, in _helper',
        '    raise ValueError("I give up")',
        "ValueError: I give up",
    ]
    entry = project.test_entry("add() adds")
    assert (entry["score"], entry["status"]) == (0.0, "failed")
    assert entry["output"].startswith("error: 0 / 2 points\nyour add raised ValueError: I give up\n")
    _assert_no_grader_frames(entry["output"])


def test_sys_exit_in_student_code_fails_that_test_only_and_shows_only_student_frames(make_project) -> None:
    project = _project(
        make_project,
        ADD_CHECKS
        + '''
    def test_quit(student):
        student.quit()

    def test_after(student):
        assert True
''',
    )
    project.write("submission/01/demo.py", RAISES)
    result = project.run("--submission", "submission")
    result.assert_outcomes(failed=2, passed=1)
    section = _failure_section(result.outlines, "test_quit")
    assert section.splitlines() == [
        "your quit raised SystemExit: 3",
        '  File "demo.py", line 9, in quit',
        "    sys.exit(3)",
        "SystemExit: 3",
    ]
    assert project.test_entry("test_after")["score"] == 1.0


def test_sys_exit_while_importing_scores_zero_on_every_test_of_that_exercise(make_project) -> None:
    project = _project(
        make_project,
        ADD_CHECKS
        + '''
    def test_again(student):
        assert student.add(1, 1) == 2
''',
    )
    project.write("submission/01/demo.py", "import sys\nsys.exit('bye')\n")
    result = project.run("--submission", "submission")
    result.assert_outcomes(errors=2)
    for test in ("test_add", "test_again"):
        section = _failure_section(result.outlines, test)
        assert "bye" in section
        _assert_no_grader_frames(section)
    assert project.results()["score"] == 0.0


# ---- printed output ----


def _printing_project(make_project) -> GradedProject:
    project = _project(make_project)
    project.write("submission/01/demo.py", "def add(a, b):\n    print('x' * 5000)\n    return a + b\n")
    return project


def test_student_output_in_the_terminal_is_capped_by_max_output(make_project) -> None:
    project = _printing_project(make_project)
    result = project.run("--submission", "submission", "--max-output", "100", "-rA")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["x" * 100, "... [4901 more characters cut]"])
    assert "x" * 101 not in result.stdout.str()
    assert "x" * 101 not in project.test_entry("add() adds")["output"]


def test_student_output_in_results_json_says_how_much_was_cut(make_project) -> None:
    project = _printing_project(make_project)
    project.run("--submission", "submission", "--max-output", "100")
    output = project.test_entry("add() adds")["output"]
    assert re.search(r"captured output:\nx{100}\n\.\.\. \[490[01] more characters cut\]$", output), output
