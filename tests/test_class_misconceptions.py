"""What the class page counts: each misconception once, dependent failures under their root cause,
each exercise's median and spread, and results.json files of every age still read.

The gradebooks here are built from results.json documents written by the real writer
(grader.reports.gradescope) from hand-made grading results, so no model is loaded; the page itself,
for a class graded end to end and drawn in Chromium, is tests/test_class_page.py's.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from grader.classroom.by_exercise import by_exercise, most_left_alone
from grader.classroom.gradebook import Gradebook, gradebook_from
from grader.classroom.misconceptions import misconceptions
from grader.classroom.page import render_class
from grader.judging import scoring
from grader.judging.mistakes import Mistake
from grader.judging.results import CheckResult, ExerciseResult, RunResult, TestResult
from grader.judging.scoring import Grade
from grader.reports.gradescope import gradescope_results

REPO = Path(__file__).resolve().parent.parent
TRANSPOSED = Mistake("transposed pattern", "the pattern is transposed: it must be [query, key]")
SPACE = Mistake("token_index misses the leading space", "compare token.strip() with word.strip()")
FIX_FIRST = Mistake(SPACE.name, "fix token_index first: compare token.strip() with word.strip()")


def failed(check: str, hint: str | Mistake, weight: float = 1.0) -> CheckResult:
    text, name = (hint.hint, hint.name) if isinstance(hint, Mistake) else (hint, None)
    return CheckResult(check, False, weight, "wrong", text, mistake=name)


def graded_test(exercise: str, title: str, *checks: CheckResult, status: str = "") -> TestResult:
    """A test worth 2 points: all of them unless a check that carries points failed, or `status`
    says it was not passed (a stub's "not_attempted")."""
    status = status or ("failed" if any(not c.passed and c.weight for c in checks) else "passed")
    return TestResult(f"test_{title}", exercise, f"test_{title}", title, 2.0, 2.0 if status == "passed" else 0.0,
                      status, list(checks))


def results_json(folder: Path, name: str, *tests: TestResult) -> Path:
    run = RunResult("toy-gpt2", "--model", "cpu", name)
    for exercise in sorted({t.exercise for t in tests}):
        run.exercises.append(ExerciseResult(exercise, "", f"{exercise}.py", [t for t in tests if t.exercise == exercise]))
    path = folder / name / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(gradescope_results(run)))
    return path


def book_of(folder: Path, students: dict[str, tuple[TestResult, ...]]) -> Gradebook:
    return gradebook_from([(name, results_json(folder, name, *tests)) for name, tests in students.items()], folder)


def test_a_named_mistake_keeps_its_hint_for_the_student_and_its_name_for_the_class(monkeypatch) -> None:
    monkeypatch.setattr(scoring, "soft", type("Quiet", (), {"fail": staticmethod(lambda text: None)}))
    want = torch.arange(4.0).reshape(2, 2)
    grade = Grade()
    grade.compare("the pattern", want.T, want, mistakes={TRANSPOSED: want.T}, hint="[query, key]")
    grade.compare("another", want + 1, want, mistakes={TRANSPOSED: want.T}, hint="[query, key]")
    named, fallback = grade.checks
    assert (named.hint, named.mistake) == (TRANSPOSED.hint, TRANSPOSED.name)
    assert (fallback.hint, fallback.mistake) == ("[query, key]", None)
    document = gradescope_results(RunResult("toy-gpt2", "", "cpu", "x", exercises=[
        ExerciseResult("03", "", "attention.py", [graded_test("03", "pattern", named, fallback)])]))
    entry = document["tests"][0]
    assert entry["extra_data"]["hints"] == [{"check": "the pattern", "hint": TRANSPOSED.hint, "mistake": TRANSPOSED.name},
                                            {"check": "another", "hint": "[query, key]"}]
    assert f"hint: {TRANSPOSED.hint}" in entry["output"] and TRANSPOSED.name not in entry["output"]


def test_a_mistake_needs_a_name_of_its_own() -> None:
    with pytest.raises(ValueError, match="short name of its own"):
        Mistake("the pattern is transposed", "the pattern is transposed")
    with pytest.raises(ValueError):
        Mistake(" ", "the pattern is transposed")


def test_one_mistake_over_many_checks_is_one_row(tmp_path: Path) -> None:
    book = book_of(tmp_path, {
        "ann": (graded_test("03", "pattern of head 0", failed("pattern", TRANSPOSED)),
                graded_test("03", "pattern of head 1", failed("pattern", TRANSPOSED))),
        "ben": (graded_test("03", "pattern of head 0", failed("pattern", TRANSPOSED)),),
        "cat": (graded_test("03", "pattern of head 0"),),
    })
    named, unnamed = misconceptions(book.rows)
    assert [(m.name, m.students, len(m.checks)) for m in named] == [(TRANSPOSED.name, ["ann", "ben"], 2)]
    assert named[0].hint == TRANSPOSED.hint and unnamed == []


def test_a_check_that_named_no_mistake_is_one_row_over_its_cases(tmp_path: Path) -> None:
    book = book_of(tmp_path, {
        "ann": (graded_test("03", "heads [France>0.3]", failed("highest weight first", "sort by weight")),
                graded_test("03", "heads [Spain>0.2]", failed("highest weight first", "sort by weight"))),
        "ben": (graded_test("03", "heads [Spain>0.2]", failed("highest weight first", "sort by weight")),),
    })
    named, unnamed = misconceptions(book.rows)
    assert named == [] and [(m.name, m.students, len(m.checks)) for m in unnamed] == \
        [("heads › highest weight first", ["ann", "ben"], 2)]


def test_dependent_failures_count_under_their_root_cause(tmp_path: Path) -> None:
    dependents = [graded_test("03", f"heads_attending_to case {i}", failed("token_index finds the word", FIX_FIRST, weight=0),
                       failed("every head above the threshold", "loop over every layer and every head"))
                  for i in range(3)]
    book = book_of(tmp_path, {
        "ann": (graded_test("03", "token_index", failed("token_index(..., 'John')", SPACE)), *dependents),
        "ben": (graded_test("03", "token_index", failed("token_index(..., 'John')", SPACE)),),
        "cat": (graded_test("03", "heads_attending_to", failed("every head above the threshold", "loop over every layer")),),
    })
    named, unnamed = misconceptions(book.rows)
    assert [(m.name, m.students, len(m.checks)) for m in named] == [(SPACE.name, ["ann", "ben"], 4)]
    assert named[0].hint == SPACE.hint  # its own check's advice, not the dependents' "fix it first"
    # Only cat's failure, which no broken token_index explains, is left as a failure of its own.
    assert [(m.name, m.students) for m in unnamed] == [("heads_attending_to › every head above the threshold", ["cat"])]
    page = render_class(book)
    table = page[page.index('id="misconceptions"'):page.index('id="exercises"')]
    assert table.count('<tr class="misconception">') == 1 and "fix token_index first" not in table
    assert f'<strong class="mistake">{SPACE.name}</strong>' in table and '<span class="count">2</span> of 3' in table


def test_results_json_from_before_mistakes_were_named_still_read(tmp_path: Path) -> None:
    path = results_json(tmp_path, "old", graded_test("03", "pattern", failed("pattern", TRANSPOSED)))
    document = json.loads(path.read_text())
    for entry in document["tests"]:
        for hint in entry["extra_data"]["hints"]:
            del hint["mistake"]  # as mechgrade wrote it before
    path.write_text(json.dumps(document))
    bare = tmp_path / "older" / "results.json"  # no extra_data at all: the hint lines of the output
    bare.parent.mkdir()
    bare.write_text(json.dumps({**document, "tests": [{k: v for k, v in entry.items() if k != "extra_data"}
                                                      for entry in document["tests"]]}))
    book = gradebook_from([("old", path), ("older", bare)], tmp_path)
    named, unnamed = misconceptions(book.rows)
    assert named == [] and [m.hint for m in unnamed] == [TRANSPOSED.hint] * len(unnamed)
    assert sorted(name for m in unnamed for name in m.students) == ["old", "older"]
    assert "No failed check named a mistake (see the failed checks below)" in render_class(book)


def test_each_exercise_has_its_median_spread_and_who_left_it(tmp_path: Path) -> None:
    stub = dict(status="not_attempted")
    book = book_of(tmp_path, {  # exercise 02: 2 points per student; exercise 03: two tests of 2 points
        "ann": (graded_test("02", "a"), graded_test("03", "b"), graded_test("03", "c")),
        "ben": (graded_test("02", "a"), graded_test("03", "b"), graded_test("03", "c", failed("x", "y"))),
        "cat": (graded_test("02", "a", failed("x", "y")), graded_test("03", "b", **stub), graded_test("03", "c", **stub)),
        "dan": (graded_test("02", "a"), graded_test("03", "b", **stub), graded_test("03", "c", **stub)),
    })
    ex02, ex03 = by_exercise(book)
    assert ex02.scores == (0.0, 100.0, 100.0, 100.0) and ex03.scores == (0.0, 0.0, 50.0, 100.0)
    assert (ex02.median, ex03.median) == (100.0, 25.0)
    assert ex03.quartiles == (0.0, 62.5) and (ex03.lowest, ex03.highest) == (0.0, 100.0)
    assert (ex02.not_attempted, ex03.not_attempted) == ([], ["cat", "dan"])
    assert most_left_alone([ex02, ex03]) is ex03
    page = render_class(book)
    assert "Most left unattempted: <strong>exercise 03</strong>, by 2 of 4" in page


def _mistake_keys(path: Path) -> list[ast.expr]:
    """Every key of every dict that a check file passes as mistakes=, directly, in a lambda, or
    returned by a function of the file."""
    tree = ast.parse(path.read_text())
    functions = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    keys = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "mistakes":
            places = [node.value]
            # mistakes=f(...) or mistakes=lambda w: f(...): what f returns; a function called for a
            # mistake's value (a batch it builds) gives no mistakes
            calls = [node.value, node.value.body] if isinstance(node.value, ast.Lambda) else [node.value]
            places += [ret.value for call in calls
                       if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in functions
                       for ret in ast.walk(functions[call.func.id]) if isinstance(ret, ast.Return) and ret.value]
            keys += [key for place in places for d in ast.walk(place) if isinstance(d, ast.Dict) for key in d.keys if key]
    return keys


def test_every_mistake_the_check_files_know_is_named() -> None:
    files = sorted(REPO.glob("exercises/*/test_*.py"))
    keys = {(path.parent.name, key.lineno): key for path in files for key in _mistake_keys(path)}
    assert len(keys) > 50  # the walk finds the check files' mistakes
    unnamed = [where for where, key in keys.items()
               if not (isinstance(key, ast.Call) and isinstance(key.func, ast.Name) and key.func.id == "Mistake")]
    assert not unnamed, f"mistakes keyed by a bare hint (exercise, line): {unnamed}"
    for where, key in keys.items():
        name = key.args[0]
        assert isinstance(name, ast.Constant) and len(name.value) <= 45, (where, ast.unparse(name))
