"""Build a small graded project inside a pytester folder, and run the grader on it.

A graded project is what the plugin grades: ``pyproject.toml`` loading ``grader.plugin``,
``exercises/NN/test_NN_<topic>.py`` (the checks), ``exercises/NN/<topic>.py`` (the student's
stub), optionally ``solutions/NN/<topic>.py`` and ``fixtures/<model>/NN.json``::

    project = make_project(
        pytester,
        checks='''
            @pytest.mark.points(2)
            def test_add(student, grade):
                grade.compare("1 + 2", student.add(1, 2), 3)
        ''',
        stub="def add(a, b):\\n    return a + b\\n",
    )
    result = project.run()
    assert project.results()["score"] == 2

Checks never request the ``model`` fixture, so no model is ever loaded; ``MECHGRADE_MODEL`` is set
to the toy model so choosing one never probes the network. Runs are in-process (fast) unless
``run(..., subprocess=True)``; ``new_project(folder, ...)`` builds one outside pytester for a
module-scoped fixture, and its runs always go to a subprocess (one slow run shared by many tests).
"""

from __future__ import annotations

import json
import os
import subprocess as sp
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MODEL_ID = "toy-gpt2"
PYPROJECT = '[tool.pytest.ini_options]\naddopts = "-p grader.plugin"\n'
RESULTS = "out/results.json"

# Flags every run gets: no cache folder in the project, no HTML report unless a test asks for one,
# and a results.json to read the grade from.
BASE_ARGS = ("-p", "no:cacheprovider", "--report-html", "", "--gradescope-json", RESULTS)


def _dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def check_file(checks: str, topic: str, title: str) -> str:
    """A check file: the exercise title as docstring, `import pytest`, TOPIC, then `checks`."""
    return f'"""{title}"""\n\nimport pytest\n\nTOPIC = "{topic}"\n\n\n' + _dedent(checks)


@dataclass
class GradedProject:
    root: Path
    pytester: pytest.Pytester | None = None  # None: runs always go to a subprocess
    model_id: str = MODEL_ID

    # ---- writing files ----

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_dedent(text))
        return path

    def add_exercise(
        self,
        exercise: str,
        checks: str,
        stub: str | None = None,
        solution: str | None = None,
        topic: str = "demo",
        title: str = "Demo exercise",
    ) -> None:
        self.write(f"exercises/{exercise}/test_{exercise}_{topic}.py", check_file(checks, topic, title))
        if stub is not None:
            self.write(f"exercises/{exercise}/{topic}.py", stub)
        if solution is not None:
            self.write(f"solutions/{exercise}/{topic}.py", solution)

    def fixture_path(self, exercise: str = "01") -> Path:
        return self.root / "fixtures" / self.model_id / f"{exercise}.json"

    def write_fixture(
        self,
        exercise: str,
        checks: dict[str, Any],
        format_version: int = 1,
        provenance: dict[str, Any] | None = None,
    ) -> Path:
        """A fixture file; `checks` maps key -> value, or key -> {"value", "atol", "rtol"}."""
        entries = {
            key: entry if isinstance(entry, dict) and "value" in entry else {"value": entry, "atol": 1e-5, "rtol": 1e-4}
            for key, entry in checks.items()
        }
        document = {
            "format_version": format_version,
            "exercise": exercise,
            "model": self.model_id,
            "provenance": provenance or {"device": "cpu", "command": "handwritten by the test"},
            "checks": entries,
        }
        path = self.fixture_path(exercise)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=1))
        return path

    def read_fixture(self, exercise: str = "01") -> dict[str, Any]:
        return json.loads(self.fixture_path(exercise).read_text())

    # ---- running the grader ----

    def run(
        self, *args: str, paths: tuple[str, ...] = ("exercises",), subprocess: bool = False, timeout: float = 60
    ) -> pytest.RunResult:
        """pytest on `paths` with the grader; `subprocess` where signals or imports would leak."""
        full = (*paths, *BASE_ARGS, *args)
        if self.pytester is None:
            return run_subprocess(self.root, full, timeout)
        if subprocess:
            return self.pytester.runpytest_subprocess(*full, timeout=timeout)
        return self.pytester.runpytest(*full)

    def results(self, path: str = RESULTS) -> dict[str, Any]:
        return json.loads((self.root / path).read_text())

    def test_entry(self, name_part: str, path: str = RESULTS) -> dict[str, Any]:
        """The results.json entry whose name contains `name_part` (the test's title or name)."""
        found = [t for t in self.results(path)["tests"] if name_part in t["name"]]
        assert len(found) == 1, f"{name_part!r} matches {[t['name'] for t in self.results(path)['tests']]}"
        return found[0]


def run_subprocess(root: Path, args: tuple[str, ...], timeout: float) -> pytest.RunResult:
    """`python -m pytest args` in `root`, on the toy model; for projects shared by a module."""
    env = {**os.environ, "MECHGRADE_MODEL": MODEL_ID, "HF_HUB_OFFLINE": "1", "PYTEST_ADDOPTS": ""}
    started = time.monotonic()
    done = sp.run(
        [sys.executable, "-m", "pytest", *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )
    return pytest.RunResult(done.returncode, done.stdout.splitlines(), done.stderr.splitlines(), time.monotonic() - started)


def new_project(root: Path, checks: str, **kwargs: Any) -> GradedProject:
    """A graded project in `root` (outside pytester: its runs go to a subprocess)."""
    (root / "pyproject.toml").write_text(PYPROJECT)
    project = GradedProject(root)
    exercise = kwargs.pop("exercise", "01")
    fixtures = kwargs.pop("fixtures", None)
    project.add_exercise(exercise, checks, **kwargs)
    if fixtures is not None:
        project.write_fixture(exercise, fixtures)
    return project


def make_project(
    pytester: pytest.Pytester,
    checks: str,
    stub: str | None = None,
    solution: str | None = None,
    fixtures: dict[str, Any] | None = None,
    exercise: str = "01",
    topic: str = "demo",
    title: str = "Demo exercise",
) -> GradedProject:
    """A graded project with one exercise; `fixtures` (key -> value) writes its fixture file."""
    pytester.makefile(".toml", pyproject=PYPROJECT)
    project = GradedProject(pytester.path, pytester)
    project.add_exercise(exercise, checks, stub, solution, topic, title)
    if fixtures is not None:
        project.write_fixture(exercise, fixtures)
    return project
