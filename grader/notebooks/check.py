"""Grading from a Jupyter cell: ``check("03")`` grades the functions defined in the notebook.

The course's notebooks (grader.notebooks.build) start with ``model = course_model()`` and end with
``check("NN")``. ``check`` runs the exercise's checks with pytest in the kernel's own process, on
the functions found in the kernel's namespace (``__main__``), with the model already loaded in
the kernel: a second run costs the checks' own time, not an import and a load. It prints the
score table and shows the HTML report inline.

A function the notebook does not define is "not attempted". This is local self-grading (student
code runs in the kernel, as ``pytest exercises/NN`` runs it in pytest's process): an autograder
grades a submitted notebook with ``mechgrade grade --isolate --submission work.ipynb`` instead.
"""

from __future__ import annotations

import html
from typing import Any

import pytest

from grader.grading.command import DEFAULT_REPORT
from grader.grading.session import PRESET_KEY, Preset
from grader.project import EXERCISES_DIR, PROJECT_ROOT, known_exercises
from grader.reports.terminal import render_terminal
from grader.student import runtime
from grader.student.model_guard import ModelGuard
from grader.student.submission import GradedSource

REPO_ROOT = PROJECT_ROOT
REPORT_HEIGHT_PX = 640

_guards: dict[int, ModelGuard] = {}  # id(model) -> its ModelGuard, kept from one check to the next
last_run: Any = None  # the RunResult of the last check(), for code that wants more than the table


def check(exercise: str | int, show_report: bool = True) -> None:
    """Grade exercise `exercise` ("03") on the functions this notebook defines; print the score
    table and show the HTML report. The result (grader.judging.results.RunResult) is kept as
    ``grader.notebooks.check.last_run``: returned, a notebook would print its repr under the report."""
    global last_run
    if runtime.graded_elsewhere():
        return None  # a submitted notebook being graded: its last cell must not start a grading of its own
    folder = EXERCISES_DIR / str(exercise).zfill(2)
    if not folder.is_dir():
        known = known_exercises()
        raise ValueError(f"no exercise {exercise!r}; known: {known}")
    model = runtime.kernel_model()
    guard = _guards.get(id(model))
    if guard is None:
        guard = _guards[id(model)] = ModelGuard(model)
    else:  # what the notebook did to the model since the last check (a hook left on it, say)
        for repair in guard.repair():
            print(f"before grading, the grader repaired the model: {repair}")
    preset = Preset(source=GradedSource.namespace(), guard=guard)
    finished = _Finished()

    class PresetPlugin:
        @staticmethod
        def pytest_configure(config: pytest.Config) -> None:
            config.stash[PRESET_KEY] = preset

    report = REPO_ROOT / DEFAULT_REPORT
    # The project's configuration named, not found: pytest would look for it above a --model folder.
    args = [str(folder), "-c", str(REPO_ROOT / "pyproject.toml"), "--rootdir", str(REPO_ROOT),
            "-p", "grader.plugin", "-p", "no:cacheprovider", "-p", "no:terminal",
            "-p", "no:faulthandler", "--capture=sys", "--model", runtime.model_id(model),
            "--device", _device_of(model), "--report-html", str(report)]
    code = pytest.main(args, plugins=[PresetPlugin(), finished])
    run = finished.run
    if run is None:
        raise RuntimeError(f"grading exercise {folder.name} did not run (pytest exit status {int(code)})")
    last_run = run
    print(render_terminal(run, str(report)), end="")
    if show_report and report.is_file():
        _show_html(report.read_text(encoding="utf-8"))


class _Finished:
    """Takes the run's result from the grading plugin once it has written its reports."""

    run: Any = None

    def pytest_sessionfinish(self, session: Any) -> None:
        hooks = session.config.pluginmanager.get_plugin("mechgrade-grading")
        self.run = getattr(hooks, "final_run", None)


_Finished.pytest_sessionfinish.trylast = True  # type: ignore[attr-defined]  # after the plugin's reports


def _device_of(model: Any) -> str:
    try:
        return str(next(model.parameters()).device)
    except StopIteration:
        return "cpu"


def _show_html(document: str) -> None:
    """The report in the cell's output, in an iframe: its styles stay out of the notebook's page."""
    try:
        from IPython.display import HTML, display
    except ImportError:
        return
    # Wrapped in a <div>: IPython's HTML() warns ("Consider using IPython.display.IFrame") about a
    # document that starts with <iframe, and IFrame takes a URL, not the report itself.
    frame = (f'<div><iframe srcdoc="{html.escape(document, quote=True)}" '
             f'style="width: 100%; height: {REPORT_HEIGHT_PX}px; border: 1px solid #ccc"></iframe></div>')
    display(HTML(frame))
