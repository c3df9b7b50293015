"""A correct module passes with full points; a wrong one fails with a message that says why."""

from __future__ import annotations

from graded_project import GradedProject

ADD_CHECKS = '''
    @pytest.mark.points(2)
    def test_add(student, grade):
        """add() adds two numbers"""
        grade.compare("add(1, 2)", student.add(1, 2), 3, hint="use the + operator")
'''
CORRECT = "def add(a, b):\n    return a + b\n"
OFF_BY_ONE = "def add(a, b):\n    return a + b - 1\n"


def test_a_correct_module_passes_with_full_points(make_project) -> None:
    project: GradedProject = make_project(ADD_CHECKS, stub=CORRECT)
    result = project.run()
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    entry = project.test_entry("add() adds two numbers")
    assert (entry["score"], entry["max_score"], entry["status"]) == (2.0, 2.0, "passed")
    assert project.results()["score"] == 2.0
    result.stdout.fnmatch_lines(["01 *Demo exercise*2 / 2*passed", "*total*2 / 2*100%"])


def test_a_wrong_module_fails_with_headline_hint_and_failed_check_count(make_project) -> None:
    project: GradedProject = make_project(ADD_CHECKS, stub=OFF_BY_ONE)
    result = project.run()
    result.assert_outcomes(failed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "add(1, 2): expected 3, got 2 (atol=1e-05, rtol=0.0001)",
            "    shape: ()",
            "    largest absolute error: 1",
            "    largest relative error: 0.333333",
            "    hint: use the + operator",
        ],
        consecutive=True,
    )
    assert result.stdout.str().count("expected 3, got 2") == 1  # once: no short summary repeats it
    entry = project.test_entry("add() adds two numbers")
    assert (entry["score"], entry["status"]) == (0.0, "failed")
    assert "expected 3, got 2 (atol=1e-05, rtol=0.0001)" in entry["output"]
    assert "hint: use the + operator" in entry["output"]


def test_every_failing_check_of_a_test_is_reported_not_just_the_first(make_project) -> None:
    project: GradedProject = make_project(
        '''
        def test_add(student, grade):
            grade.compare("add(1, 2)", student.add(1, 2), 3)
            grade.compare("add(5, 5)", student.add(5, 5), 10)
        ''',
        stub=OFF_BY_ONE,
    )
    result = project.run()
    result.stdout.fnmatch_lines(["add(1, 2): expected 3, got 2*", "*", "add(5, 5): expected 10, got 9*"])
    assert "2 of 2 checks failed: add(1, 2), add(5, 5)" in project.test_entry("test_add")["output"]


def test_a_known_mistake_is_named_through_mistakes(make_project) -> None:
    project: GradedProject = make_project(
        '''
        def test_add(student, grade):
            grade.compare("add(2, 3)", student.add(2, 3), 5, hint="generic advice",
                          mistakes={"you multiplied instead of adding": 6})
        ''',
        stub="def add(a, b):\n    return a * b\n",
    )
    result = project.run()
    result.stdout.fnmatch_lines(["add(2, 3): expected 5, got 6*", "*", "    hint: you multiplied instead of adding"])
    assert "hint: generic advice" not in result.stdout.str()
    assert "hint: you multiplied instead of adding" in project.test_entry("test_add")["output"]


def test_mistakes_may_be_a_function_of_the_expected_value(make_project) -> None:
    project: GradedProject = make_project(
        '''
        def test_add(student, grade):
            grade.compare("add(2, 3)", student.add(2, 3), 5,
                          mistakes=lambda want: {"off by one: check the bounds": want - 1})
        ''',
        stub=OFF_BY_ONE,
    )
    project.run().stdout.fnmatch_lines(["    hint: off by one: check the bounds"])


def test_an_unknown_mistake_falls_back_to_the_hint(make_project) -> None:
    project: GradedProject = make_project(
        '''
        def test_add(student, grade):
            grade.compare("add(2, 3)", student.add(2, 3), 5, hint="generic advice",
                          mistakes={"you multiplied instead of adding": 6})
        ''',
        stub="def add(a, b):\n    return 0\n",
    )
    project.run().stdout.fnmatch_lines(["    hint: generic advice"])


def test_a_plain_assert_fails_the_check_with_its_message(make_project) -> None:
    project: GradedProject = make_project(
        '''
        def test_add(student):
            assert student.add(1, 2) == 3, "add(1, 2) should be 3"
        ''',
        stub=OFF_BY_ONE,
    )
    project.run().assert_outcomes(failed=1)
    entry = project.test_entry("test_add")
    assert entry["score"] == 0.0
    assert "check failed: add(1, 2) should be 3" in entry["output"]
