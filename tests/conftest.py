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


@pytest.fixture
def make_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Callable[..., GradedProject]:
    """``make_project(checks=..., stub=..., solution=..., fixtures=...)``: a graded project in
    pytester's folder, graded on the toy model (chosen through $MECHGRADE_MODEL, so no network)."""
    monkeypatch.setenv("MECHGRADE_MODEL", graded_project.MODEL_ID)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def make(checks: str, **kwargs: Any) -> GradedProject:
        return graded_project.make_project(pytester, checks, **kwargs)

    return make
