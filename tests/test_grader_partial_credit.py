"""Points follow the share of check weight that passed (rules in grader.judging.scoring.points_for)."""

from __future__ import annotations

import pytest
from graded_project import GradedProject

from grader.judging.results import CheckResult
from grader.judging.scoring import Grade, points_for

# add() is right except for negative numbers, so each check below can be made to pass or fail.
STUB = '''
    def add(a, b):
        if a < 0 or b < 0:
            return 0
        return a + b
'''


def test_three_of_four_checks_passing_in_a_three_point_test_scores_2_25(make_project) -> None:
    project: GradedProject = make_project(
        '''
        @pytest.mark.points(3)
        def test_add(student, grade):
            grade.compare("add(1, 2)", student.add(1, 2), 3)
            grade.compare("add(2, 2)", student.add(2, 2), 4)
            grade.compare("add(0, 5)", student.add(0, 5), 5)
            grade.compare("add(-1, 2)", student.add(-1, 2), 1)
        ''',
        stub=STUB,
    )
    project.run().assert_outcomes(failed=1)
    entry = project.test_entry("test_add")
    assert (entry["score"], entry["max_score"], entry["status"]) == (2.25, 3.0, "failed")
    assert "1 of 4 checks failed: add(-1, 2)" in entry["output"]


def test_check_weights_decide_the_share(make_project) -> None:
    project: GradedProject = make_project(
        '''
        @pytest.mark.points(4)
        def test_add(student, grade):
            grade.compare("positive", student.add(1, 2), 3, weight=1)
            grade.compare("negative", student.add(-1, -2), -3, weight=3)
        ''',
        stub=STUB,
    )
    project.run()
    entry = project.test_entry("test_add")
    assert entry["score"] == 1.0  # 1 of 4 weight passed, of 4 points
    assert "✗ negative (weight 3)" in entry["output"]


def test_grade_check_conditions_count_like_comparisons(make_project) -> None:
    project: GradedProject = make_project(
        '''
        @pytest.mark.points(2)
        def test_add(student, grade):
            grade.check("returns an int", isinstance(student.add(1, 2), int), "add should return an int")
            grade.check("handles negatives", student.add(-1, -1) == -2, "add(-1, -1) should be -2",
                        hint="no special case for negative numbers")
        ''',
        stub=STUB,
    )
    result = project.run()
    result.stdout.fnmatch_lines(["*handles negatives: add(-1, -1) should be -2", "    hint: no special case for negative numbers"])
    assert project.test_entry("test_add")["score"] == 1.0


def test_a_test_that_raises_after_some_checks_passed_scores_zero(make_project) -> None:
    project: GradedProject = make_project(
        '''
        @pytest.mark.points(3)
        def test_add(student, grade):
            grade.compare("add(1, 2)", student.add(1, 2), 3)
            grade.compare("add(2, 2)", student.add(2, 2), 4)
            grade.compare("add(None, 1)", student.add(None, 1), 1)
        ''',
        stub=STUB,
    )
    project.run().assert_outcomes(failed=1)
    entry = project.test_entry("test_add")
    assert entry["score"] == 0.0
    assert entry["output"].startswith("error: 0 / 3 points\nyour add raised TypeError:")
    assert "TypeError" in entry["output"]


def test_a_test_without_soft_checks_scores_all_or_nothing(make_project) -> None:
    project: GradedProject = make_project(
        '''
        @pytest.mark.points(2)
        def test_positive(student):
            assert student.add(1, 2) == 3

        @pytest.mark.points(5)
        def test_negative(student):
            assert student.add(-1, -2) == -3
        ''',
        stub=STUB,
    )
    project.run().assert_outcomes(passed=1, failed=1)
    assert project.test_entry("test_positive")["score"] == 2.0
    assert project.test_entry("test_negative")["score"] == 0.0


def test_a_test_without_a_points_marker_is_worth_one_point(make_project) -> None:
    project: GradedProject = make_project(
        '''
        def test_add(student, grade):
            grade.compare("add(1, 2)", student.add(1, 2), 3)
        ''',
        stub=STUB,
    )
    project.run()
    entry = project.test_entry("test_add")
    assert (entry["score"], entry["max_score"]) == (1.0, 1.0)


def test_results_json_and_the_terminal_total_add_up_every_test(make_project) -> None:
    project: GradedProject = make_project(
        '''
        @pytest.mark.points(3)
        def test_partly(student, grade):
            grade.compare("a", student.add(1, 2), 3)
            grade.compare("b", student.add(1, 1), 2)
            grade.compare("c", student.add(3, 3), 6)
            grade.compare("d", student.add(-1, 2), 1)

        @pytest.mark.points(2)
        def test_right(student, grade):
            grade.compare("e", student.add(5, 5), 10)

        @pytest.mark.points(1.5)
        def test_wrong(student, grade):
            grade.compare("f", student.add(-5, 5), 0.5)
        ''',
        stub=STUB,
    )
    result = project.run()
    results = project.results()
    assert [t["score"] for t in results["tests"]] == [2.25, 2.0, 0.0]
    assert [t["max_score"] for t in results["tests"]] == [3.0, 2.0, 1.5]
    assert [t["number"] for t in results["tests"]] == ["1.1", "1.2", "1.3"]
    assert results["score"] == 4.25
    assert "total: 4.25 / 6.5 points" in results["output"]
    result.stdout.fnmatch_lines(["01 *Demo exercise*4.25 / 6.5*partial", "*total*4.25 / 6.5*65%"])


# ---- the rule itself, without a pytest run ----


def _grade(*passed_weights: tuple[bool, float]) -> Grade:
    grade = Grade()
    grade.checks.extend(CheckResult(f"check {i}", ok, w) for i, (ok, w) in enumerate(passed_weights))
    return grade


@pytest.mark.parametrize(
    ("max_points", "checks", "raised", "points"),
    [
        (3, [(True, 1), (True, 1), (True, 1), (False, 1)], False, 2.25),
        (4, [(True, 1), (False, 3)], False, 1.0),
        (3, [(True, 1), (True, 1)], True, 0.0),
        (2, [], False, 2.0),
        (1, [(True, 1), (True, 1), (False, 1)], False, 0.6667),
        (2, [(True, 0), (False, 0)], False, 2.0),  # no weight at all: nothing to lose
    ],
)
def test_points_for_follows_the_documented_rule(max_points, checks, raised, points) -> None:
    assert points_for(max_points, _grade(*checks), raised=raised) == points


def test_points_for_a_test_without_a_grade_is_all_or_nothing() -> None:
    assert points_for(2.0, None, raised=False) == 2.0
    assert points_for(2.0, None, raised=True) == 0.0


def test_an_answer_of_the_wrong_kind_is_named_in_the_students_terms(monkeypatch) -> None:
    """None, an error, or an object that stayed in the sandbox (a Figure's Axes): each said as it is."""
    from grader.judging import scoring
    from grader.sandbox.client import student_error

    monkeypatch.setattr(scoring, "soft", type("Quiet", (), {"fail": staticmethod(lambda text: None)}))
    kept = type("Handle", (), {"type_name": "Axes"})()
    raised = scoring.Raised(student_error("ValueError", "ValueError", "no France", ""))
    raised.error.function = "token_index"
    grade = Grade()
    for got in (None, kept, raised):
        assert grade.wrong_kind("returns a Figure", got, "a matplotlib Figure", hint="return fig") is False
    assert [c.message for c in grade.checks] == [
        "expected a matplotlib Figure, got NoneType: None",
        "expected a matplotlib Figure, got Axes",
        "your token_index raised ValueError: no France",
    ]
    assert grade.share_passed() == 0
