"""The pytest plugin that grades ``exercises/NN/test_NN_<topic>.py``.

Loaded for every pytest run in this repository (``addopts = -p grader.plugin``) and inert unless
graded check files were collected: then it loads the model once, hands checks the fixtures
they need (``model``, ``student``, ``reference``, ``expected``, ``grade``), limits each test's
time, turns outcomes into points, and writes the reports at the end of the run.

A check file names the module it grades and carries points::

    \"\"\"What the model attends to\"\"\"      # the exercise's title
    TOPIC = "attention"                     # grades <graded folder>/03/attention.py

    @pytest.mark.points(2)
    def test_pattern(student, expected, grade, run_cached): ...
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from grader.grading.command import DEFAULT_REPORT
from grader.grading.session import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_TIMEOUT,
    GRADE_KEY,
    PRESET_KEY,
    SESSION_KEY,
    GradingSession,
    Options,
    Preset,
    exercise_of,
    session_of,
)
from grader.grading.run_folder import RunFolder
from grader.judging.fixtures import FixtureError, render_drift
from grader.judging.results import RunResult, TestResult, cap
from grader.judging.scoring import Grade, points_for
from grader.models import ModelChoiceError, ModelLoadError, ModelUnavailable, ensure_available
from grader.reports.gradescope import write_failure_results, write_gradescope
from grader.reports.html import write_html
from grader.reports.terminal import render_banner, render_failed_checks, render_terminal
from grader.sandbox.client import StudentError, WorkerLost
from grader.sandbox.faults import memory_fault
from grader.sandbox.start import EnvironmentFault, IsolationUnavailable
from grader.sandbox.timeouts import GradingTimeout
from grader.student.executor import TENSOR_ARRAY_WARNING
from grader.student.frames import student_traceback
from grader.student.notebook_cells import NOT_DEFINED
from grader.student.submission import SubmissionImportError

# The fixtures checks receive live in their own module, registered with this plugin.
pytest_plugins = ["grader.grading.check_fixtures"]

NOT_RUN = "not run yet"
PYTEST_DEFAULT_REPORTCHARS = "fE"  # pytest's own default for -r (a private constant there)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mechgrade", "grading of the exercises (mechgrade)")
    group.addoption("--model", dest="mechgrade_model", default=None,
                    help="model id to grade on: gpt2-small or toy-gpt2 (default: $MECHGRADE_MODEL, "
                         "else gpt2-small when reachable, else toy-gpt2)")
    group.addoption("--device", dest="mechgrade_device", default=None,
                    help="cpu, cuda, cuda:N or mps (default: CUDA when available, else CPU)")
    group.addoption("--solutions", dest="mechgrade_solutions", action="store_true",
                    help="grade the reference solutions in solutions/ instead of exercises/")
    group.addoption("--submission", dest="mechgrade_submission", default=None, metavar="DIR",
                    help="grade the modules in DIR (laid out like exercises/, or flat), or a notebook "
                         "(work.ipynb, or a DIR holding one)")
    group.addoption("--report-html", dest="mechgrade_report_html", default=None, metavar="PATH",
                    help=f"where to write the HTML feedback report (default: {DEFAULT_REPORT} in the project "
                         "root, wherever pytest starts); '' for none")
    group.addoption("--gradescope-json", dest="mechgrade_gradescope_json", default=None, metavar="PATH",
                    help="also write a Gradescope results.json here (rewritten after every test)")
    # Not --timeout: pytest-timeout owns that name, and both plugins may be installed.
    group.addoption("--check-timeout", dest="mechgrade_timeout", default=DEFAULT_TIMEOUT, type=float,
                    help=f"seconds each check may take before it fails as timed out (default {DEFAULT_TIMEOUT:g}; 0: none)")
    group.addoption("--max-output", dest="mechgrade_max_output", default=DEFAULT_MAX_OUTPUT, type=int,
                    help=f"characters of a test's printed output kept in reports (default {DEFAULT_MAX_OUTPUT})")
    group.addoption("--fixtures-dir", dest="mechgrade_fixtures_dir", default=None, metavar="DIR",
                    help="where expected values live (default: fixtures/ in the project root)")
    group.addoption("--isolate", dest="mechgrade_isolate", action="store_true",
                    help="run student code in worker processes (an unprivileged user when run as root): "
                         "what an autograder uses; Linux only")
    group.addoption("--worker-memory", dest="mechgrade_worker_memory", default=4096, type=int, metavar="MIB",
                    help="with --isolate: memory a worker may allocate beyond its size at start (default 4096)")
    group.addoption("--held-out", dest="mechgrade_held_out", default=None, metavar="PATH",
                    help="the hidden checks' inputs (a bundle's held_out.json; default: the fixed ones)")
    group.addoption("--staging-note", dest="mechgrade_staging_notes", action="append", default=[], metavar="TEXT",
                    help="a note for the reports on what was left out of the submission (grade-all's; repeatable)")
    group.addoption("--fixtures-mode", dest="mechgrade_fixtures_mode", default="use",
                    choices=["use", "refresh", "check", "refresh-incomplete"],
                    help="use: compare with stored expected values; refresh/check: what "
                         "`mechgrade fixtures refresh|check` run (prefer those commands)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): points a graded check is worth")
    config.addinivalue_line("markers", "hidden: a hidden check, on held-out inputs: releases leave it out, the "
                                       "autograder runs it, students see it once grades are published")
    # Not the student's doing: matplotlib asks a torch tensor for a numpy copy in a way numpy 2
    # deprecates. A student who draws a tensor as the hint says should see nothing of it.
    config.addinivalue_line("filterwarnings", f"ignore:{TENSOR_ARRAY_WARNING}:DeprecationWarning")
    config.stash[SESSION_KEY] = None
    config.pluginmanager.register(GradingHooks(config), "mechgrade-grading")


def _first_line(text: str | None) -> str:
    return text.strip().splitlines()[0].strip() if text and text.strip() else ""


class GradingHooks:
    """The hooks that run a grading session. One instance per pytest run, registered at
    configure time, so no state outlives the run (pytester runs many in one process)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.collection_errors: list[str] = []
        self.refused: str | None = None  # why the graded source was refused (a notebook too large, ...)
        self.drift_text: str | None = None
        self.final_run: RunResult | None = None  # what the reports were made from, for the terminal too
        self._outputs: RunFolder | None = None

    @property
    def outputs(self) -> RunFolder:
        """The run's private folder: every report is written there and moved into place at the end
        (grader.grading.run_folder). Made on the first write, so a run that writes nothing makes none."""
        if self._outputs is None:
            self._outputs = RunFolder([self._report_path(), self._results_path()])
        return self._outputs

    def _report_path(self) -> Path | None:
        report = self.config.getoption("mechgrade_report_html")
        return Path(self.config.rootpath) / DEFAULT_REPORT if report is None else Path(report) if report else None

    def _results_path(self) -> Path | None:
        results = self.config.getoption("mechgrade_gradescope_json")
        return Path(results) if results else None

    @property
    def grading(self) -> GradingSession | None:
        return session_of(self.config)

    # ---- collection: which tests are graded, for how many points ----

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        graded = [item for item in items if exercise_of(Path(str(item.path))) is not None]
        if not graded:
            return
        try:
            grading = GradingSession(Options.from_config(self.config),
                                     guard=self.config.stash.get(PRESET_KEY, Preset()).guard)
        except ValueError as exc:  # the student sees why in results.json and the report, not only on stderr
            self.refused = str(exc)
            raise pytest.UsageError(str(exc)) from None
        grading.notes.extend(self.config.getoption("mechgrade_staging_notes"))  # links skipped, ... (grade-all)
        self.config.stash[SESSION_KEY] = grading
        for item in graded:
            self._register(grading, item)

    @staticmethod
    def _register(grading: GradingSession, item: pytest.Item) -> None:
        exercise = exercise_of(Path(str(item.path)))
        assert exercise is not None
        module = getattr(item, "module", None)
        exercise_title = _first_line(getattr(module, "__doc__", None)) or f"Exercise {exercise}"
        result_of_exercise = grading.exercise(exercise, exercise_title, getattr(module, "TOPIC", ""))
        # A release's check file says what it left out (grader.course.release): shown, never graded here.
        left_out = getattr(module, "HIDDEN_CHECKS", None)
        if isinstance(left_out, dict):
            result_of_exercise.hidden_checks = int(left_out.get("checks", 0))
            result_of_exercise.hidden_points = float(left_out.get("points", 0))
        marker = item.get_closest_marker("points")
        function = getattr(item, "function", None)
        title = _first_line(getattr(function, "__doc__", None)) or item.name
        callspec = getattr(item, "callspec", None)
        if callspec is not None:  # parametrized: say which case, or students can't tell them apart
            title = f"{title} [{callspec.id}]"
        result = TestResult(
            nodeid=item.nodeid,
            exercise=exercise,
            name=item.name,
            title=title,
            max_points=float(marker.args[0]) if marker and marker.args else 1.0,
            output=NOT_RUN,
            hidden=item.get_closest_marker("hidden") is not None,
        )
        grading.results[item.nodeid] = result
        grading.exercises[exercise].tests.append(result)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        grading = self.grading
        if grading is None:
            return
        needs_model = any("model" in getattr(item, "fixturenames", ()) for item in session.items
                          if item.nodeid in grading.results)
        try:
            choice, device = grading.choice, grading.device
            if needs_model:
                ensure_available(choice)  # before any check: seconds, not a minute of hub retries
        except ModelUnavailable as exc:
            self._refuse(grading, str(exc))
        except ValueError as exc:  # unknown model id, CUDA asked for but absent
            raise pytest.UsageError(str(exc)) from None
        if grading.options.isolate:
            try:
                grading.start_isolation(needs_model)
            except EnvironmentFault as exc:
                self._refuse(grading, f"the grading environment is broken: {exc}")
            except ModelLoadError as exc:
                self._refuse(grading, f"the grading environment cannot load the model: {exc}")
            except (IsolationUnavailable, RuntimeError) as exc:
                raise pytest.UsageError(str(exc)) from None
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            # pytest's default short summary would repeat every failure's headline: the score table
            # the run ends with says it all. An explicit -r... is kept.
            if self.config.getoption("reportchars") == PYTEST_DEFAULT_REPORTCHARS:
                reporter.reportchars = ""
            mode = "in isolated workers" if grading.options.isolate else "in this process"
            reporter.write_line(f"mechgrade: grading {grading.options.source.describe()} on {choice.spec.id} "
                                f"({choice.reason}), device {device}, student code {mode}")
            if choice.banner():
                for line in render_banner(choice.banner() or "", _terminal_width(reporter)):
                    reporter.write_line(line, yellow=True, bold=True)
        if needs_model and not grading.options.isolate:
            try:  # now, not in the first check: a model that cannot load is no student's failed check
                grading.model
            except ModelLoadError as exc:
                self._refuse(grading, f"the grading environment cannot load the model: {exc}")
        if grading.options.isolate and grading.options.gradescope_json is not None:
            # Written for real only once every worker is dead (see pytest_sessionfinish); until then
            # the file says that grading did not reach its end, which is true if it never does.
            write_failure_results(self.outputs.private(grading.options.gradescope_json),
                                  "grading started but did not reach its end: no grade was recorded")
        else:
            self._write_gradescope(grading)

    def _refuse(self, grading: GradingSession, reason: str) -> None:
        """Stop before any check: the environment cannot grade. The reports say "not graded" and
        why, never a score; the terminal gets one line."""
        grading.not_graded = reason
        raise pytest.UsageError(f"not graded: {reason}")

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors.append(f"could not collect {report.nodeid}: {report.longreprtext[-2000:]}")

    # ---- running: time limit, outcome -> points, repairs ----

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        grading = self.grading
        if grading is None or item.nodeid not in grading.results:
            yield
            return
        if "model" in item.fixturenames:
            grading.model  # load the model first: its load is the grader's time, not the check's
        grading.sandbox.faults.clear()  # what the environment did wrong, check by check
        with grading.check_time_limit("preparing this check"):
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        grading = self.grading
        if grading is None or item.nodeid not in grading.results:
            yield
            return
        with grading.check_time_limit("this check"):
            yield

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
        raised = call.excinfo  # read before pytest-check replaces it with its own summary
        grade = item.stash.get(GRADE_KEY, None)
        graded = self.grading is not None and item.nodeid in self.grading.results
        if call.when == "call" and graded and _replaces_traceback(raised, grade):
            # pytest would format a traceback (parsing the source of every frame: 50 ms a test)
            # only for the code below to replace it
            item.repr_failure = _summary_only  # type: ignore[method-assign]
        try:
            outcome = yield
        finally:
            vars(item).pop("repr_failure", None)
        report: pytest.TestReport = outcome.get_result()
        grading = self.grading
        result = grading.results.get(item.nodeid) if grading else None
        if grading is None or result is None or call.when == "teardown":
            return
        if call.when == "setup" and not report.failed:
            return
        limit = grading.options.max_output
        result.captured = cap((report.capstdout + report.capstderr).strip(), limit)
        report.sections = [(title, cap(text, limit)) for title, text in report.sections]
        result.duration += call.duration
        if grade is not None:
            result.checks = list(grade.checks)
            result.figures = list(grade.figures)
        exception = raised.value if raised is not None else None
        result.points = points_for(result.max_points, grade, raised=exception is not None)
        result.status, result.output = _classify(exception, grade, grading)
        _blame_the_environment(grading, result, exception)
        if exception is not None and result.status != "failed":
            report.longrepr = result.output  # one readable paragraph instead of a traceback wall
        elif report.failed and grade is not None and grade.any_failed:
            report.longrepr = render_failed_checks(result.checks)  # each failure once, with its hint
        if isinstance(exception, SubmissionImportError):
            grading.exercises[result.exercise].import_error = str(exception)

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        """A check whose fixture called an untouched stub (exercise 01 boots the student's model
        in a module fixture) is "not attempted" like any other: a failed check, not a setup error."""
        grading = self.grading
        result = grading.results.get(report.nodeid) if grading is not None else None
        if report.when == "setup" and report.failed and result is not None and result.status == "not_attempted":
            return "failed", "F", "FAILED"
        return None

    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        grading = self.grading
        if grading is None or item.nodeid not in grading.results:
            return
        if not grading.options.isolate and not grading.model_loaded:
            return
        repaired = grading.sandbox.after_check()
        if repaired:
            result = grading.results[item.nodeid]
            note = "the grader repaired the model after this test: " + "; ".join(repaired)
            result.output = f"{result.output}\n{note}".strip()

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        # Rewritten after every test, so an LMS finds a valid file even if the process dies later.
        grading = self.grading
        if grading is not None and nodeid in grading.results and not grading.options.isolate:
            self._write_gradescope(grading)

    def pytest_keyboard_interrupt(self) -> None:
        if self.grading is not None:
            self.grading.interrupted = "the run was interrupted before every check ran"

    # ---- end of run: expected-value drift, reports ----

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        try:
            self._finish(session)
        finally:  # what was not moved into place (a run that failed half-way) is not left behind
            if self._outputs is not None:
                self._outputs.close()

    def _finish(self, session: pytest.Session) -> None:
        grading = self.grading
        if grading is None:
            self._write_empty_gradescope()
            return
        if grading.not_graded:
            self._write_not_graded(grading)
            return
        try:
            grading.close_sandbox()  # every process that ran student code is gone before the reports
        except Exception as exc:
            grading.errors.append(f"could not stop the workers cleanly: {exc}")
        grading.errors.extend(self.collection_errors)
        for result in grading.results.values():
            if result.output == NOT_RUN:
                result.status, result.output = "skipped", "did not run (the run stopped early or the test was deselected)"
        mode = grading.options.fixtures_mode
        if mode != "use":
            complete = {ex: all(t.status == "passed" for t in er.tests) for ex, er in grading.exercises.items()}
            drift = grading.store.finish(complete)
            self.drift_text = render_drift(drift, mode, grading.choice.spec.id, all(complete.values()))
            if mode == "check" and any(not d.clean for d in drift.values()):
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        grading.timings["checks_end"] = time.time()
        self._write_reports(grading)
        grading.timings["reports_end"] = time.time()
        timings_path = os.environ.get("MECHGRADE_TIMINGS")
        if timings_path:
            import resource

            grading.timings["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            Path(timings_path).write_text(json.dumps(grading.timings))

    def _write_reports(self, grading: GradingSession) -> None:
        """The final reports, each written in the run folder and moved into place: the HTML report
        first, so that once results.json is there, the report it points to is too."""
        run = self.final_run = grading.run_result()
        self._write_html(run, grading.options.report_html)
        self._write_gradescope(grading, run)
        self._publish(grading.options.gradescope_json)

    def _write_html(self, run: RunResult, path: Path | None) -> None:
        if path is None:
            return
        try:
            write_html(run, self.outputs.private(path))
            self._publish(path)
        except Exception as exc:  # noqa: BLE001 - a broken report must never hide the grade itself
            run.errors.append(f"could not write the HTML report: {exc}")

    def _write_gradescope(self, grading: GradingSession, run: RunResult | None = None) -> None:
        """results.json in the run folder (rewritten as checks finish: what `mechgrade grade` moves
        into place if this process dies); moved into place by `_publish` at the end."""
        if grading.options.gradescope_json is None:
            return
        write_gradescope(run or grading.run_result(), self.outputs.private(grading.options.gradescope_json))

    def _publish(self, path: Path | None) -> None:
        if path is not None:
            self.outputs.publish(path)

    def _write_not_graded(self, grading: GradingSession) -> None:
        run = self.final_run = grading.run_result()
        run.exercises, run.not_graded = [], grading.not_graded
        self._write_html(run, grading.options.report_html)  # results.json below still says why if it fails
        if grading.options.gradescope_json is not None:
            write_failure_results(self.outputs.private(grading.options.gradescope_json), f"not graded: {grading.not_graded}")
            self._publish(grading.options.gradescope_json)

    def _write_empty_gradescope(self) -> None:
        """An LMS gets a results.json even when no graded check could be collected; a refused
        submission also gets an HTML report that says why."""
        reason = "\n".join(filter(None, [self.refused, *self.collection_errors])) or "no graded checks were collected"
        report, results = self._report_path(), self._results_path()
        if self.refused is not None and report is not None:
            graded = self.config.getoption("mechgrade_submission") or "the submission"
            run = RunResult(model_id="none", model_reason="grading could not start", device="none", graded=graded,
                            errors=[f"grading could not start: {reason}"])
            self._write_html(run, report)
        if results is not None:
            write_failure_results(self.outputs.private(results), f"grading could not start: {reason}")
            self._publish(results)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        grading = self.grading
        if grading is None:
            return
        terminalreporter.write_line("")
        if grading.not_graded:  # pytest has printed the one line already
            return
        if self.drift_text:
            terminalreporter.write_line(self.drift_text)
        path = grading.options.report_html
        shown = os.path.relpath(path) if path is not None else None
        terminalreporter.write_line(render_terminal(self.final_run or grading.run_result(), shown,
                                                    _terminal_width(terminalreporter)))


def _terminal_width(reporter: Any) -> int:
    """Columns of the terminal pytest writes to (80 when it cannot tell, as in a CI log)."""
    try:
        return int(reporter._tw.fullwidth)  # pytest's TerminalWriter: the width it wraps at itself
    except (AttributeError, TypeError, ValueError):
        return 80


def _replaces_traceback(raised: pytest.ExceptionInfo[BaseException] | None, grade: Grade | None) -> bool:
    """Whether pytest_runtest_makereport puts its own text where pytest's traceback would go: for
    everything but a plain assertion of a test, which keeps pytest's traceback."""
    if grade is not None and grade.any_failed:
        return True
    return raised is not None and (isinstance(raised.value, StudentError) or not isinstance(raised.value, AssertionError))


def _summary_only(excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
    return excinfo.exconly()


def _blame_the_environment(grading: GradingSession, result: TestResult, exception: BaseException | None) -> None:
    """A check that did not pass because the machine failed (grader.sandbox.faults) says so, and
    the run is marked as needing a re-grade. Its points stay what the checks gave."""
    faults = list(dict.fromkeys(grading.sandbox.faults))
    grading.sandbox.faults.clear()
    graders_own = isinstance(exception, MemoryError) and not isinstance(exception, StudentError)
    if graders_own:  # raised by the grader's own code: what student code raises arrives as a StudentError
        faults.append(memory_fault())
    if not faults or result.status == "passed":
        return
    result.status = "error"
    said = [f"{f}; this run needs a re-grade" for f in faults]
    result.output = "\n".join(said if graders_own else [*said, result.output]).strip()
    grading.needs_regrade.extend(f"{result.title}: {f}" for f in faults if f"{result.title}: {f}" not in grading.needs_regrade)


def _classify(exception: BaseException | None, grade: Grade | None, grading: GradingSession) -> tuple[Any, str]:
    """(status, one readable paragraph) for a finished test."""
    if exception is None:
        if grade is not None and grade.any_failed:
            failed = [c for c in grade.checks if not c.passed and c.weight > 0 and not c.not_earned]
            unearned = [c.name for c in grade.checks if c.not_earned]
            text = f"{len(failed)} of {len(grade.checks)} checks failed: " + ", ".join(c.name for c in failed)
            if unearned:
                text += f"; not earned until the answer is right: {', '.join(unearned)}"
            return "failed", text
        return "passed", ""
    if isinstance(exception, NotImplementedError) and NOT_DEFINED in str(exception):
        return "not_attempted", f"not attempted: {exception}"
    if isinstance(exception, NotImplementedError):
        said = f" ({exception})" if str(exception) else ""
        return "not_attempted", f"not attempted: the stub still raises NotImplementedError{said}"
    if isinstance(exception, GradingTimeout):
        return "timed_out", f"timed out: {exception} (a slow loop, or code waiting forever?)"
    if isinstance(exception, SubmissionImportError):
        return "error", f"your module could not be imported, so this exercise scores 0:\n{exception}"
    if isinstance(exception, (FixtureError, ModelLoadError, ModelChoiceError)):
        return "skipped", f"cannot grade: {exception}"
    if isinstance(exception, WorkerLost):
        return "error", str(exception)
    if isinstance(exception, StudentError):
        return "error", f"{exception.headline}\n" + exception.student_traceback
    if isinstance(exception, AssertionError):
        return "failed", f"check failed: {exception}".strip()
    return "error", "your code raised an error:\n" + student_traceback(exception, [grading.options.source.root])
