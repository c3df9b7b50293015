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
to the toy model so choosing one never probes the network.
"""

from __future__ import annotations

import json
import textwrap
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
    pytester: pytest.Pytester
    model_id: str = MODEL_ID

    @property
    def root(self) -> Path:
        return self.pytester.path

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

    def run(self, *args: str, subprocess: bool = False, timeout: float = 60) -> pytest.RunResult:
        """pytest on exercises/ with the grader; `subprocess` where signals or imports would leak."""
        full = (*BASE_ARGS, *args)
        if "exercises" not in " ".join(a for a in args if not a.startswith("-")):
            full = ("exercises", *full)
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
    project = GradedProject(pytester)
    project.add_exercise(exercise, checks, stub, solution, topic, title)
    if fixtures is not None:
        project.write_fixture(exercise, fixtures)
    return project
