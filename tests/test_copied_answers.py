"""Answers copied from a release score 0 on every hidden check, in every exercise that has them.

The submission (tests/copied_answers.py) answers each public check with the value the release
stores for it, looked up by what a function sees of its input. It is graded twice, as an LMS
would: by a bundle built with `--hidden-seed` (one bundle for every exercise, its own
run_autograder), and by `mechgrade grade --isolate` in this repository on the fixed held-out inputs
(grader/judging/held_out.py DEFAULT). Exercise 01 has no hidden check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from copied_answers import WRITERS, write_submission
from test_bundle_assignments import MODEL, REPO, _run_autograder, project  # noqa: F401 (project: a fixture)

from grader.course.bundle import COURSE_FILE, HELD_OUT_FILE, build_bundle
from grader.course.release import build_release
from grader.judging.held_out import HeldOut
from grader.judging.prompts import CLEAN_PROMPT

EXERCISES = ["02", "03", "04", "05", "06", "07", "08"]  # every exercise with hidden checks
# A seed whose held-out prompt begins as the public prompt does ("The capital city of Venezuela is"):
# the hardest draw for a copy, as a stream read before the country is the public prompt's own.
SEED = "copied answers term 8"
HIDDEN, PUBLIC = "after_published", "visible"


def test_every_exercise_with_hidden_checks_is_copied_and_graded() -> None:
    marked = sorted(p.parent.name for p in (REPO / "exercises").glob("*/test_*.py") if "@pytest.mark.hidden" in p.read_text())
    assert marked == EXERCISES == sorted(WRITERS)


@pytest.fixture(scope="module")
def copied(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811 (the imported fixture)
    """The submission, written from a release of every exercise."""
    folder = tmp_path_factory.mktemp("copied")
    release = build_release(folder / "release", exercises=EXERCISES, root=project, check_drift=False)
    return write_submission(release, folder / "submission", EXERCISES)


@pytest.fixture(scope="module")
def seeded_bundle(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    return build_bundle(out, MODEL, project, check_drift=False, exercises=EXERCISES, hidden_seed=SEED)


@pytest.fixture(scope="module")
def graded_on_drawn_inputs(seeded_bundle: Path, copied: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run_autograder(seeded_bundle, copied, tmp_path_factory.mktemp("seeded"))


@pytest.fixture(scope="module")
def graded_on_fixed_inputs(copied: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    results = tmp_path_factory.mktemp("fixed") / "results.json"
    command = [sys.executable, "-m", "grader", "grade", "--isolate", "--model", MODEL, "--submission", str(copied),
               "--gradescope-json", str(results), "--report-html", ""]
    for exercise in EXERCISES:
        command += ["--exercise", exercise]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert results.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(results.read_text())


def _by_exercise(results: dict, visibility: str) -> dict[str, list[dict]]:
    tests: dict[str, list[dict]] = {exercise: [] for exercise in EXERCISES}
    for test in results["tests"]:
        if test["visibility"] == visibility:
            tests[test["name"][:2]].append(test)
    return tests


def _earned(tests: list[dict]) -> dict[str, float]:
    return {test["name"]: test["score"] for test in tests if test["score"] > 0}


@pytest.mark.parametrize("inputs", ["fixed", "drawn"])
def test_answers_copied_from_the_release_score_0_on_every_hidden_check(inputs: str, request) -> None:
    results = request.getfixturevalue(f"graded_on_{inputs}_inputs")
    hidden = _by_exercise(results, HIDDEN)
    assert all(hidden.values()), {exercise: len(tests) for exercise, tests in hidden.items()}
    assert {exercise: _earned(tests) for exercise, tests in hidden.items()} == {exercise: {} for exercise in EXERCISES}


@pytest.mark.parametrize("inputs", ["fixed", "drawn"])
def test_the_copied_answers_do_pass_public_checks_of_every_exercise(inputs: str, request) -> None:
    """So the copy is the damaging one: it earns the public points it was copied from."""
    results = request.getfixturevalue(f"graded_on_{inputs}_inputs")
    public = _by_exercise(results, PUBLIC)
    assert {exercise for exercise, tests in public.items() if _earned(tests)} == set(EXERCISES)


def test_the_seed_draws_a_held_out_prompt_that_begins_as_the_public_one(seeded_bundle: Path) -> None:
    drawn = HeldOut.from_json(zipfile.ZipFile(seeded_bundle).read(HELD_OUT_FILE).decode())
    assert drawn.prompt.split()[:2] == CLEAN_PROMPT.split()[:2], drawn.prompt


def test_the_seeded_bundle_grades_every_hidden_check_the_course_lists(graded_on_drawn_inputs: dict,
                                                                        seeded_bundle: Path) -> None:
    course = json.loads(zipfile.ZipFile(seeded_bundle).read(COURSE_FILE))
    counted = {exercise: len(tests) for exercise, tests in _by_exercise(graded_on_drawn_inputs, HIDDEN).items()}
    assert counted == {exercise: course["checks"][exercise]["hidden_checks"] for exercise in EXERCISES}
