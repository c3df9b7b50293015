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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grader import DEFAULT_REPORT

REPO_ROOT = Path(__file__).resolve().parents[2]
EXERCISES_DIR = REPO_ROOT / "exercises"
REPORT_HEIGHT_PX = 640

_loaded: dict[tuple[str, str], Any] = {}  # (model id, device) -> a model course_model loaded
_model_ids: dict[int, str] = {}  # id(model) -> its model id, for the models this kernel may grade on
_guards: dict[int, Any] = {}  # id(model) -> its ModelGuard, kept from one check to the next
_graded_model: Callable[[], Any] | None = None  # set where a submitted notebook is graded
last_run: Any = None  # the RunResult of the last check(), for code that wants more than the table


def serve_model(model: Callable[[], Any]) -> None:
    """Where a submitted notebook is graded (grader.student.executor): `course_model()` in its
    cells returns the model the grader's side already holds, instead of loading another."""
    global _graded_model
    _graded_model = model


def course_model(name: str | None = None, device: str | None = None) -> Any:
    """The course's model as a TransformerBridge in compatibility mode, loaded once per kernel:
    `name` as ``--model`` takes it (default: $MECHGRADE_MODEL, else GPT-2 small when reachable,
    else the practice model, with a banner that says so); `device` as ``--device``."""
    if _graded_model is not None and _graded_model() is not None:
        return _graded_model()
    from grader.models import MODELS, choose_device, choose_model, load_model

    choice, chosen_device = choose_model(name), choose_device(device)
    key = (choice.spec.id, chosen_device)
    if key not in _loaded:
        if choice.banner():
            print(choice.banner(), file=sys.stderr)
        _loaded[key] = load_model(choice.spec, chosen_device)
        _model_ids[id(_loaded[key])] = choice.spec.id if choice.spec.id in MODELS else choice.spec.source
    return _loaded[key]


def check(exercise: str | int, show_report: bool = True) -> None:
    """Grade exercise `exercise` ("03") on the functions this notebook defines; print the score
    table and show the HTML report. The result (grader.judging.results.RunResult) is kept as
    ``grader.notebooks.check.last_run``: returned, a notebook would print its repr under the report."""
    global last_run
    if _graded_model is not None:
        return None  # a submitted notebook being graded: its last cell must not start a grading of its own
    import pytest

    from grader.student.model_guard import ModelGuard
    from grader.reports.terminal import render_terminal
    from grader.grading.session import PRESET_KEY, Preset
    from grader.student.submission import GradedSource

    folder = EXERCISES_DIR / str(exercise).zfill(2)
    if not folder.is_dir():
        known = ", ".join(sorted(p.name for p in EXERCISES_DIR.iterdir() if p.is_dir() and p.name.isdigit()))
        raise ValueError(f"no exercise {exercise!r}; known: {known}")
    model = kernel_model()
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
            "-p", "no:faulthandler", "--capture=sys", "--model", _model_ids[id(model)],
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


def kernel_model() -> Any:
    """The model to grade on: one course_model loaded, else a sound TransformerBridge found in
    the notebook's namespace (in compatibility mode, of a model the grader knows), else a new
    course_model()."""
    namespace = vars(sys.modules["__main__"])
    bridges = [value for value in list(namespace.values()) if _is_bridge(value)]
    for model in bridges:
        if id(model) in _model_ids:
            return model
    for model in bridges:
        model_id = _known_id(model)
        if model_id is not None and getattr(model, "compatibility_mode", False) is True:
            _model_ids[id(model)] = model_id
            return model
    return course_model()


def _is_bridge(value: Any) -> bool:
    bridge = sys.modules.get("transformer_lens.model_bridge")
    return bridge is not None and isinstance(value, bridge.TransformerBridge)


def _known_id(model: Any) -> str | None:
    """The grader's id of a model booted from a hub name or a folder ("gpt2" -> gpt2-small)."""
    from grader.models import MODELS, ModelChoiceError, get_spec

    source = str(getattr(getattr(getattr(model, "original_model", None), "config", None), "_name_or_path", "") or "")
    for spec in MODELS.values():
        if source == spec.source or (spec.local and Path(source).resolve() == Path(spec.source).resolve()):
            return spec.id
    try:
        return str(Path(source).resolve()) if source and get_spec(source) else None
    except ModelChoiceError:
        return None


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
    frame = (f'<iframe srcdoc="{html.escape(document, quote=True)}" '
             f'style="width: 100%; height: {REPORT_HEIGHT_PX}px; border: 1px solid #ccc"></iframe>')
    display(HTML(frame))
