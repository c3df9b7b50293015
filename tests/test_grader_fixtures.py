"""Expected values through the plugin: `--fixtures-mode refresh|check` with `--solutions` (what
`mechgrade fixtures refresh|check` run), and grading against the stored values (mode `use`)."""

from __future__ import annotations

import json

import pytest
from graded_project import GradedProject

from grader.judging.fixtures import FORMAT_VERSION

CHECKS = '''
    def test_double(student, reference, expected, grade):
        """double() doubles"""
        want = expected("double_3", lambda: reference.double(3.0), atol=1e-6, rtol=0.0)
        grade.compare("double(3.0)", student.double(3.0), want)

    def test_halves(student, reference, expected, grade):
        """halves() halves every item"""
        want = expected("halves", lambda: reference.halves([1.0, 2.0, 5.0]))
        grade.compare("halves([1, 2, 5])", student.halves([1.0, 2.0, 5.0]), want)
'''
SOLUTION = '''
    def double(x):
        return 2 * x

    def halves(xs):
        return [x / 2 for x in xs]
'''
# The same functions, changed the way an instructor might change a reference solution.
CHANGED_SOLUTION = '''
    def double(x):
        return 2 * x + 0.25  # a changed reference solution

    def halves(xs):
        return [x / 2 for x in xs]
'''
STUB = '''
    def double(x):
        raise NotImplementedError

    def halves(xs):
        raise NotImplementedError
'''
REFRESH = ("--solutions", "--fixtures-mode", "refresh")
CHECK = ("--solutions", "--fixtures-mode", "check")


@pytest.fixture
def project(make_project) -> GradedProject:
    return make_project(CHECKS, stub=STUB, solution=SOLUTION)


# ---- refresh / check round trip ----


def test_check_without_a_fixture_file_reports_created_keys_and_fails(project: GradedProject) -> None:
    result = project.run(*CHECK)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "exercise 01 (toy-gpt2): 2 created, 0 changed, 0 unused, 0 unchanged",
            "  created   double_3",
            "  created   halves",
            "fixtures differ from the reference solutions: run `mechgrade fixtures refresh --model toy-gpt2`",
        ]
    )
    assert not project.fixture_path().exists()  # check never writes


def test_refresh_writes_one_file_per_exercise_with_provenance_and_tolerances(project: GradedProject) -> None:
    result = project.run(*REFRESH)
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["exercise 01 (toy-gpt2): 2 created, 0 changed, 0 unused, 0 unchanged"])
    assert project.fixture_path().relative_to(project.root).as_posix() == "fixtures/toy-gpt2/01.json"
    document = project.read_fixture()
    assert document["format_version"] == FORMAT_VERSION
    assert (document["exercise"], document["model"]) == ("01", "toy-gpt2")
    provenance = document["provenance"]
    for key in ("device", "torch", "transformer_lens", "transformers", "weights_sha256", "date", "command"):
        assert provenance.get(key), f"provenance lacks {key}: {provenance}"
    assert provenance["device"] == "cpu"
    assert document["checks"] == {
        "double_3": {"value": 6.0, "atol": 1e-6, "rtol": 0.0},
        "halves": {"value": [0.5, 1.0, 2.5], "atol": 1e-5, "rtol": 1e-4},
    }


def test_check_passes_after_refresh(project: GradedProject) -> None:
    project.run(*REFRESH)
    written = project.fixture_path().read_text()
    result = project.run(*CHECK)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["exercise 01 (toy-gpt2): 0 created, 0 changed, 0 unused, 2 unchanged"])
    assert "fixtures differ" not in result.stdout.str()
    assert project.fixture_path().read_text() == written


def test_check_reports_a_changed_solution_with_the_largest_difference(project: GradedProject) -> None:
    project.run(*REFRESH)
    project.write("solutions/01/demo.py", CHANGED_SOLUTION)
    result = project.run(*CHECK)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "exercise 01 (toy-gpt2): 0 created, 1 changed, 0 unused, 1 unchanged",
            "  changed   double_3 (largest difference 0.25)",
            "fixtures differ from the reference solutions: run `mechgrade fixtures refresh --model toy-gpt2`",
        ]
    )


def test_refresh_after_a_change_makes_check_pass_again(project: GradedProject) -> None:
    project.run(*REFRESH)
    project.write("solutions/01/demo.py", CHANGED_SOLUTION)
    refreshed = project.run(*REFRESH)
    refreshed.stdout.fnmatch_lines(["  changed   double_3 (largest difference 0.25)"])
    assert project.read_fixture()["checks"]["double_3"]["value"] == 6.25
    assert project.run(*CHECK).ret == 0


def test_a_key_no_longer_requested_is_reported_unused(project: GradedProject) -> None:
    project.run(*REFRESH)
    project.add_exercise("01", CHECKS.split("    def test_halves")[0])  # drop the halves check
    result = project.run(*CHECK)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["exercise 01 (toy-gpt2): 0 created, 0 changed, 1 unused, 1 unchanged", "  unused    halves"]
    )


def test_refresh_writes_nothing_when_a_reference_check_fails(project: GradedProject) -> None:
    project.write("solutions/01/demo.py", SOLUTION.replace("x / 2 for x", "x for x"))
    project.add_exercise(
        "01",
        CHECKS.replace('want = expected("halves"', 'assert reference.halves([2.0]) == [1.0]\n        want = expected("halves"'),
    )
    result = project.run(*REFRESH)
    result.stdout.fnmatch_lines(["nothing written: some reference checks failed (see above)"])
    assert not project.fixture_path().exists()


# ---- grading against stored values (mode "use") ----


def test_grading_compares_with_the_stored_values(project: GradedProject) -> None:
    project.write_fixture("01", {"double_3": 6.0, "halves": [0.5, 1.0, 2.5]})
    project.run("--solutions").assert_outcomes(passed=2)
    assert project.results()["score"] == 2.0
    assert "exercise 01: expected values from fixtures" in project.results()["output"]


def test_a_tampered_stored_value_makes_a_correct_solution_fail(project: GradedProject) -> None:
    project.write_fixture("01", {"double_3": 7.0, "halves": [0.5, 1.0, 2.5]})
    result = project.run("--solutions")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["double(3.0): expected 7, got 6 (atol=1e-05, rtol=0.0001)"])
    assert project.test_entry("double() doubles")["score"] == 0.0


def test_the_stored_tolerance_is_used_instead_of_the_one_in_the_check(project: GradedProject) -> None:
    project.write_fixture(
        "01",
        {"double_3": {"value": 6.5, "atol": 1.0, "rtol": 0.0}, "halves": [0.5, 1.0, 2.5]},
    )
    project.run("--solutions").assert_outcomes(passed=2)


def test_grading_never_writes_fixtures(project: GradedProject) -> None:
    path = project.write_fixture("01", {"double_3": 7.0, "halves": [0.5, 1.0, 2.5]})
    before = path.read_text()
    project.run("--solutions")
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == ["01.json"]


def test_a_key_missing_from_the_fixture_file_says_to_refresh(project: GradedProject) -> None:
    project.write_fixture("01", {"double_3": 6.0})
    project.run("--solutions").assert_outcomes(passed=1, failed=1)
    entry = project.test_entry("halves() halves")
    assert entry["score"] == 0.0
    assert "has no value for 'halves': the checks changed since it was made" in entry["output"]
    assert "`mechgrade fixtures refresh --model toy-gpt2 --exercise 01`" in entry["output"]


def test_an_old_format_version_says_regenerate_instead_of_a_mismatch(project: GradedProject) -> None:
    project.write_fixture("01", {"double_3": 7.0, "halves": [0.5, 1.0, 2.5]}, format_version=0)
    result = project.run("--solutions")
    result.stdout.fnmatch_lines(
        ["*has format version 0, this grader reads version 1; regenerate it with the refresh command*"]
    )
    assert "expected 7, got 6" not in result.stdout.str()
    entry = project.test_entry("double() doubles")
    assert entry["score"] == 0.0
    assert "regenerate it with the refresh command" in entry["output"]


def test_an_unreadable_fixture_file_says_regenerate(project: GradedProject) -> None:
    project.fixture_path().parent.mkdir(parents=True)
    project.fixture_path().write_text("{ not json")
    result = project.run("--solutions")
    result.stdout.fnmatch_lines(["*01.json is unreadable (*); regenerate it with the refresh command*"])
    assert json.loads((project.root / "out" / "results.json").read_text())["score"] == 0.0



def test_fixtures_made_for_other_weights_are_reported_with_the_refresh_command(project: GradedProject) -> None:
    project.run(*REFRESH)
    stored = project.read_fixture()
    stored["provenance"]["weights_sha256"] = "0" * 64  # as if the toy model had been rebuilt since
    project.fixture_path().write_text(json.dumps(stored))
    result = project.run("--solutions")
    result.stdout.fnmatch_lines(["*expected values were made for other weights of toy-gpt2*"])
    result.stdout.fnmatch_lines(["*mechgrade fixtures refresh --model toy-gpt2 --exercise 01*"])
