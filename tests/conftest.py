"""Shared test setup: pytester, and a builder of small graded projects (see graded_project.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import graded_project
import pytest
from graded_project import GradedProject

import grader.judging.pictures  # noqa: F401
import grader.reports.gradescope  # noqa: F401
import grader.reports.html  # noqa: F401

# Imported once here on purpose: pytester's in-process runs drop every module a run imported, and the
# plugin imports the HTML report (hence matplotlib, about a second) at the end of every run.

pytest_plugins = ["pytester"]

# Test files whose tests grade whole exercises or classes in processes of their own, build and install
# releases, bundles and wheels, or drive Slurm and Jupyter kernels: marked `slow`. The quick tier,
# `python -m pytest -n auto --dist loadfile -m "not slow"`, leaves them out (41 s on 2 quiet cores,
# 207 s at load 7-9); the full suite (the README's test command, and CI) runs everything.
END_TO_END = frozenset({
    "test_adversarial_submissions.py", "test_bundle.py", "test_bundle_assignments.py", "test_class_inputs.py",
    "test_class_misconceptions.py", "test_class_page.py", "test_cli_grade.py", "test_copied_answers.py",
    "test_environment_not_graded.py",
    "test_exercise_05_mistakes.py", "test_exercise_06_mistakes.py", "test_exercise_07_mistakes.py",
    "test_exercise_08_mistakes.py", "test_exercise_mistakes.py", "test_exercises_end_to_end.py",
    "test_fault_or_mistake.py", "test_grade_all.py", "test_grade_all_canary.py", "test_grade_all_hostile.py",
    "test_grade_all_slurm.py", "test_notebooks.py", "test_points_follow_work.py", "test_private_results.py",
    "test_release.py",
    "test_not_root_confined.py", "test_shipped_artefacts.py", "test_touches_only_what_it_made.py", "test_wheel.py",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in END_TO_END:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def make_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Callable[..., GradedProject]:
    """``make_project(checks=..., stub=..., solution=..., fixtures=...)``: a graded project in
    pytester's folder, graded on the toy model (chosen through $MECHGRADE_MODEL, so no network)."""
    monkeypatch.setenv("MECHGRADE_MODEL", graded_project.MODEL_ID)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def make(checks: str, **kwargs: Any) -> GradedProject:
        return graded_project.make_project(pytester, checks, **kwargs)

    return make
