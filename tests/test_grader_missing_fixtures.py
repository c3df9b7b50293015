"""Without a fixture file, expected values come from solutions/ ("local reference"); without
either, the check cannot be graded and says, in one line, which command makes the values."""

from __future__ import annotations

from graded_project import GradedProject

# Written the way the course's checks are: the reference computation is always a lambda.
CHECKS = '''
    @pytest.mark.points(2)
    def test_double(student, reference, expected, grade):
        """double() doubles"""
        want = expected("double_3", lambda: reference.double(3.0))
        grade.compare("double(3.0)", student.double(3.0), want)
'''
CORRECT = "def double(x):\n    return 2 * x\n"
WRONG = "def double(x):\n    return x * x\n"
REFRESH_COMMAND = "`mechgrade fixtures refresh --model toy-gpt2 --exercise 01`"


# ---- solutions/ present: the reference is computed now ----


def test_without_fixtures_a_correct_module_is_graded_against_the_local_reference(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=CORRECT, solution=CORRECT)
    project.run().assert_outcomes(passed=1)
    assert project.results()["score"] == 2.0


def test_without_fixtures_a_wrong_module_fails_against_the_local_reference(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=WRONG, solution=CORRECT)
    result = project.run()
    result.stdout.fnmatch_lines(["double(3.0): expected 6, got 9*"])
    assert project.results()["score"] == 0.0


def test_the_terminal_summary_says_local_reference(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=CORRECT, solution=CORRECT)
    result = project.run()
    result.stdout.fnmatch_lines(["01 *Demo exercise*2 / 2*passed", "*expected values: local reference (no fixtures for toy-gpt2)"])


def test_results_json_says_local_reference(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=CORRECT, solution=CORRECT)
    project.run()
    assert "exercise 01: expected values from local reference (no fixtures for toy-gpt2)" in project.results()["output"]


def test_fixtures_are_not_written_by_grading_against_the_local_reference(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=CORRECT, solution=CORRECT)
    project.run()
    assert not (project.root / "fixtures").exists()


# ---- neither fixtures nor solutions/: cannot grade ----



def test_without_fixtures_or_solutions_the_check_says_how_to_make_expected_values(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=CORRECT)
    result = project.run()
    section = result.stdout.str().split("_ test_double _")[1].split("\n=")[0]
    lines = [line for line in section.splitlines() if line.strip() and not line.startswith("_")]
    assert lines == [
        "cannot grade: no expected values for exercise 01 on model toy-gpt2 "
        f"({project.fixture_path()}); make them with {REFRESH_COMMAND}, or grade where solutions/ is present"
    ]
    assert "Traceback" not in result.stdout.str()


def test_without_fixtures_or_solutions_the_test_is_skipped_with_zero_points(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=CORRECT)
    project.run()
    entry = project.test_entry("double() doubles")
    assert entry["score"] == 0.0
    assert entry["output"].startswith("skipped: 0 / 2 points\ncannot grade: no expected values for exercise 01")
    assert REFRESH_COMMAND in entry["output"]


def test_without_fixtures_or_solutions_a_check_that_passes_no_computation_is_skipped(make_project) -> None:
    project: GradedProject = make_project(
        '''
        @pytest.mark.points(2)
        def test_double(student, expected, grade):
            """double() doubles"""
            grade.compare("double(3.0)", student.double(3.0), expected("double_3"))
        ''',
        stub=CORRECT,
    )
    result = project.run()
    result.stdout.fnmatch_lines([f"cannot grade: no expected values for exercise 01 on model toy-gpt2 (*); make them with {REFRESH_COMMAND}*"])
    assert "Traceback" not in result.stdout.str()
    entry = project.test_entry("double() doubles")
    assert entry["score"] == 0.0
    assert entry["output"].startswith("skipped: 0 / 2 points\n")


def test_without_fixtures_or_solutions_reports_say_no_expected_values_are_available(make_project) -> None:
    project: GradedProject = make_project(CHECKS, stub=CORRECT)
    result = project.run()
    assert "local reference" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*expected values: none available"])
    assert "exercise 01: expected values from none available" in project.results()["output"]
