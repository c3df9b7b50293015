"""The state of one grading run: options, the model (loaded once), the graded modules,
expected values, and every test's result as it comes in."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from grader.grading.command import DEFAULT_REPORT
from grader.judging.fixtures import FixtureError, FixtureStore, Mode, refresh_command
from grader.judging.results import ExerciseResult, RunResult, TestResult
from grader.judging.scoring import Grade
from grader.models import (
    ModelChoice,
    choose_device,
    choose_model,
    describe_environment,
    load_model,
    weights_digest,
)
from grader.sandbox.client import InProcessSandbox, Sandbox, StudentModule
from grader.sandbox.start import start_isolated_sandbox
from grader.sandbox.timeouts import GradingTimeout, time_limit
from grader.student.model_guard import ModelGuard
from grader.student.submission import GradedSource, SubmissionImportError, import_file

SESSION_KEY = pytest.StashKey["GradingSession | None"]()  # on the pytest Config
GRADE_KEY = pytest.StashKey[Grade]()  # on each test item: its soft checks
GRADED_FILE = re.compile(r"test_(\d\d)_\w+\.py")
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_OUTPUT = 2000  # characters of a student's printed output kept per test


@dataclass(frozen=True)
class Preset:
    """What a caller that runs pytest in its own process already holds, put on the config (under
    PRESET_KEY) before collection: a notebook kernel grades the functions in its namespace
    (`source`) on the model it has loaded (`guard`, kept from one run to the next)."""

    source: GradedSource | None = None
    guard: ModelGuard | None = None


PRESET_KEY = pytest.StashKey[Preset]()


@dataclass(frozen=True)
class Options:
    model: str | None
    device: str | None
    source: GradedSource
    report_html: Path | None
    gradescope_json: Path | None
    timeout: float
    max_output: int
    fixtures_mode: Mode
    root: Path  # the project root: exercises/ and solutions/ live here
    fixtures_dir: Path  # expected values: <fixtures_dir>/<model-id>/NN.json
    isolate: bool = False  # student code runs in worker processes (grader.sandbox.isolated)
    worker_memory_mib: int = 4096
    held_out: Path | None = None  # the hidden checks' inputs (a bundle's held_out.json); None: the defaults

    @classmethod
    def from_config(cls, config: pytest.Config) -> Options:
        report_html = config.getoption("mechgrade_report_html")
        gradescope = config.getoption("mechgrade_gradescope_json")
        root = Path(config.rootpath)
        preset = config.stash.get(PRESET_KEY, Preset())
        return cls(
            model=config.getoption("mechgrade_model"),
            device=config.getoption("mechgrade_device"),
            source=preset.source or GradedSource.choose(
                config.getoption("mechgrade_solutions"), config.getoption("mechgrade_submission"), root
            ),
            report_html=root / DEFAULT_REPORT if report_html is None else Path(report_html) if report_html else None,
            gradescope_json=Path(gradescope) if gradescope else None,
            timeout=float(config.getoption("mechgrade_timeout")),
            max_output=int(config.getoption("mechgrade_max_output")),
            fixtures_mode=config.getoption("mechgrade_fixtures_mode"),
            root=root,
            fixtures_dir=Path(config.getoption("mechgrade_fixtures_dir") or root / "fixtures"),
            isolate=bool(config.getoption("mechgrade_isolate")),
            worker_memory_mib=int(config.getoption("mechgrade_worker_memory")),
            held_out=Path(config.getoption("mechgrade_held_out")) if config.getoption("mechgrade_held_out") else None,
        )


def exercise_of(path: Path) -> str | None:
    """'03' for exercises/03/test_03_attention.py; None for files that are not graded checks."""
    match = GRADED_FILE.fullmatch(path.name)
    if match and path.parent.name == match.group(1):
        return match.group(1)
    return None


class GradingSession:
    def __init__(self, options: Options, guard: ModelGuard | None = None) -> None:
        """`guard`: a model already loaded (and guarded) by the caller, graded on instead of loading one."""
        self.options = options
        self.started = time.monotonic()
        # Wall-clock stamps of the run's phases, for benchmarks/grading_benchmark.py.
        self.timings: dict[str, float] = {"configured": time.time()}
        self.started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.exercises: dict[str, ExerciseResult] = {}
        self.results: dict[str, TestResult] = {}  # nodeid -> result, in collection order
        self.errors: list[str] = []
        self.notes: list[str] = []  # about the graded code, each once (a notebook is every exercise's module)
        self.interrupted: str | None = None
        self.not_graded: str | None = None  # the environment could not grade: why (no score is given)
        self.needs_regrade: list[str] = []  # checks the environment failed (grader.sandbox.faults)
        self._choice: ModelChoice | None = None
        self._device: str | None = None
        self._guard: ModelGuard | None = guard
        self._held_out: Any = None
        self._grader_model: Any = None  # isolated grading: the grader's model, with no guard
        self._store: FixtureStore | None = None
        self._memo: dict[Any, Any] = {}  # see `remembered`
        self._references: dict[tuple[str, str], ModuleType | SubmissionImportError] = {}
        self._sandbox: Sandbox | None = None
        self._students: dict[str, StudentModule | SubmissionImportError] = {}
        self._cells_timed_out: dict[Path, str] = {}  # a notebook whose cells ran out of time at import

    # ---- model and device, decided lazily: a run that needs no model never loads one ----

    @property
    def choice(self) -> ModelChoice:
        if self._choice is None:
            self._choice = choose_model(self.options.model)
        return self._choice

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = choose_device(self.options.device)
        return self._device

    @property
    def guard(self) -> ModelGuard:
        if self._guard is None:
            if self.options.isolate:
                raise RuntimeError("isolated grading loads the model when it starts the sandbox")
            spec, device = self.choice.spec, self.device
            self.timings["load_start"] = time.time()
            model = load_model(spec, device)
            self.timings["load_end"] = time.time()
            self._guard = ModelGuard(model, reload=self._reload)
        return self._guard

    @property
    def model(self) -> Any:
        """The grader's model. In isolated grading no student code ever touches it."""
        if self._grader_model is not None:
            return self._grader_model
        return self.guard.model

    # ---- the sandbox student code runs in ----

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            if self.options.isolate:
                raise RuntimeError("the isolated sandbox starts when collection ends")
            self._sandbox = InProcessSandbox(
                model=lambda: self._guard.model if self._guard is not None else None,
                guard=lambda: self._guard,
                passthrough=(GradingTimeout,),
            )
            self._sandbox.own_paths = [self.options.source.root]
        return self._sandbox

    def start_isolation(self, needs_model: bool) -> None:
        """Load the model (when checks need one) and start the template process that forks the
        workers, now: before this process reads any expected value or imports any reference
        solution, since a forked process sees all of its parent's memory."""
        self.timings["load_start"] = time.time()
        self._sandbox, self._grader_model, self._memo = start_isolated_sandbox(self, needs_model)
        self.timings["load_end"] = time.time()

    @contextmanager
    def check_time_limit(self, what: str) -> Iterator[None]:
        """The per-check time limit. In-process, a SIGALRM interrupts the student's code; isolated,
        the worker is killed at the deadline, so the grader's side has nothing to interrupt."""
        if self.options.isolate:
            timeout = self.options.timeout
            self.sandbox.deadline = time.monotonic() + timeout if timeout > 0 else None
            yield
            return
        with time_limit(self.options.timeout, what):
            yield

    def close_sandbox(self) -> None:
        """End every process that ran student code (before the final reports are written)."""
        if self._sandbox is not None:
            self._sandbox.close()

    def remembered(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The grader's own result `compute` gives on its model (a forward pass, activations),
        computed once per run; in whole-class grading once per grading process, where the
        grader's model (which no student code touches) serves run after run. Callers must not
        change what they get: hand out copies where code may (grader.grading.check_fixtures.run_cached)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def _reload(self) -> Any:
        self._memo.clear()  # computed with weights a test has since changed, perhaps
        return load_model(self.choice.spec, self.device)

    @property
    def model_loaded(self) -> bool:
        return self._guard is not None or self._grader_model is not None

    @property
    def store(self) -> FixtureStore:
        if self._store is None:
            provenance = {
                **describe_environment(self.device),
                "dtype": "float32",
                "model": self.choice.spec.id,
                "weights_sha256": weights_digest(self.choice.spec),
                "command": " ".join(shlex.quote(a) for a in ["mechgrade", *sys.argv[1:]])
                if Path(sys.argv[0]).name == "mechgrade"
                else " ".join(shlex.quote(a) for a in ["pytest", *sys.argv[1:]]),
            }
            self._store = FixtureStore(
                self.choice.spec.id, self.options.fixtures_mode, provenance, self.options.fixtures_dir,
                held_out_digest=lambda: self.held_out.digest(),
            )
        return self._store

    @property
    def held_out(self) -> Any:
        """The hidden checks' inputs (a grader.judging.held_out.HeldOut): --held-out's file, else the
        fixed defaults. Imported here, when a hidden check first asks: a release ships no hidden
        checks and leaves that module, which holds the defaults, out."""
        if self._held_out is None:
            from grader.judging import held_out  # late: absent from a release, needed only by hidden checks

            path = self.options.held_out
            self._held_out = held_out.DEFAULT if path is None else held_out.HeldOut.read(path)
        return self._held_out

    # ---- graded modules ----

    def graded_module(self, exercise: str, topic: str) -> StudentModule:
        """The graded module as a proxy: its functions run in the sandbox, answers come back as data."""
        key = f"{exercise}/{topic}"
        if key not in self._students:
            path = self.options.source.module_path(exercise, topic)
            if path in self._cells_timed_out:  # every exercise runs the same cells: they would again
                raise GradingTimeout(f"{self._cells_timed_out[path]} (when an earlier exercise ran its cells)")
            self.sandbox.start_exercise(exercise)
            try:
                module = self.sandbox.module(key, path)
                self._students[key] = module
                self.notes.extend(n for n in module.import_notes if n not in self.notes)
            except SubmissionImportError as exc:
                self._students[key] = exc
            except GradingTimeout as exc:
                if path.suffix == ".ipynb":
                    self._cells_timed_out[path] = str(exc)
                raise
        found = self._students[key]
        if isinstance(found, SubmissionImportError):
            raise found
        return found

    def reference_module(self, exercise: str, topic: str) -> ModuleType | None:
        """The reference solution, or None where solutions/ is not shipped (students' copies).
        Trusted code: imported here, in the grader's process."""
        source = GradedSource.choose(solutions=True, submission=None, repo_root=self.options.root)
        path = source.module_path(exercise, topic)
        if not path.exists():
            return None
        key = (exercise, topic)
        if key not in self._references:
            try:
                self._references[key] = import_file(path, f"mechgrade_reference_{exercise}_{topic}")
            except SubmissionImportError as exc:
                self._references[key] = exc
        found = self._references[key]
        if isinstance(found, SubmissionImportError):  # the instructor's code is broken, not the student's
            raise RuntimeError(f"reference solution solutions/{exercise}/{topic}.py does not import: {found}")
        return found

    # ---- results ----

    def exercise(self, exercise: str, title: str = "", topic: str = "") -> ExerciseResult:
        if exercise not in self.exercises:
            module = self.options.source.module_path(exercise, topic) if topic else Path()
            try:
                shown = str(module.relative_to(Path.cwd()))
            except ValueError:
                shown = str(module)
            self.exercises[exercise] = ExerciseResult(exercise, title, shown)
        return self.exercises[exercise]

    def run_result(self) -> RunResult:
        choice = self._choice
        run = RunResult(
            model_id=choice.spec.id if choice else (self.options.model or "not chosen"),
            model_reason=choice.reason if choice else "no model was needed",
            device=self._device or (self.options.device or "not chosen"),
            graded=self.options.source.describe(),
            banner=choice.banner() if choice else None,
            exercises=[self.exercises[k] for k in sorted(self.exercises)],
            environment=describe_environment(self._device) if self._device else {},
            started_at=self.started_at,
            execution_time=round(time.monotonic() - self.started, 2),
            interrupted=self.interrupted,
            errors=list(self.errors),
            notes=list(self.notes),
            needs_regrade=list(self.needs_regrade),
        )
        if self._choice is not None and self._device is not None:
            for exercise in run.exercises:
                run.errors.extend(self._describe_expected(exercise))
        return run

    def _describe_expected(self, exercise: ExerciseResult) -> list[str]:
        """Fill in where the exercise's expected values come from; return what is wrong with them."""
        problems: list[str] = []
        try:
            exercise.expected_source = self.store.source(exercise.exercise)  # type: ignore[assignment]
            if exercise.expected_source == "local reference" and not (self.options.root / "solutions" / exercise.exercise).is_dir():
                exercise.expected_source = "none"
            stored = self.store.file(exercise.exercise) if exercise.expected_source == "fixtures" else None
        except FixtureError as exc:
            exercise.expected_source, stored = "none", None
            problems.append(str(exc))
        exercise.provenance = stored.provenance if stored else {}
        made_for = exercise.provenance.get("weights_sha256", "unknown")
        now = self.store.provenance["weights_sha256"]
        if "unknown" not in (made_for, now) and made_for != now:
            problems.append(
                f"exercise {exercise.exercise}: its expected values were made for other weights of "
                f"{self.choice.spec.id} (sha256 {made_for[:12]}…, these are {now[:12]}…); refresh them:\n"
                f"{refresh_command(self.choice.spec.id, exercise.exercise)}"
            )
        return problems


def session_of(config: pytest.Config) -> GradingSession | None:
    return config.stash.get(SESSION_KEY, None)
