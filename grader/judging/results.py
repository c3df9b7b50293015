"""What a grading run found, as plain data.

Computing a grade (plugin, scoring) and showing it (terminal, HTML, results.json) are separate:
the plugin fills these dataclasses once, every renderer reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# passed: every check passed; failed: at least one did (partial credit may remain);
# not_attempted: the stub still raises NotImplementedError; timed_out: the per-test limit hit;
# error: the student's code raised, or the module did not import; skipped: could not be graded
# (for example no expected values and no reference solution).
Status = Literal["passed", "failed", "not_attempted", "timed_out", "error", "skipped"]

# Where the expected values came from, shown in every report.
ExpectedSource = Literal["fixtures", "local reference", "none"]


@dataclass(frozen=True)
class FigureArtifact:
    """A picture for the HTML report, already rendered to PNG."""

    title: str
    png_base64: str
    caption: str = ""
    group: str = ""  # figures with the same group are shown side by side (student | reference)


@dataclass(frozen=True)
class CheckResult:
    """One soft check inside a test: a comparison or a condition, worth `weight` shares."""

    name: str
    passed: bool
    weight: float = 1.0
    message: str = ""  # multi-line: headline, expected vs got, tolerance, differences
    hint: str | None = None  # the likely mistake, named
    expected: str | None = None  # short text forms, for tables
    got: str | None = None
    # It held, but an answer that does nothing would pass it too, and the answer was not right:
    # it counts as failed, with nothing for the student to fix in it (see Grade.guard).
    not_earned: bool = False
    picture: FigureArtifact | None = None  # a failed comparison of tensors: expected, got, difference
    # The short name of the mistake this failure shows (grader.judging.mistakes), for the class page;
    # on a note (weight 0), the root cause this check depends on.
    mistake: str | None = None


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class, despite its name
    nodeid: str
    exercise: str  # "03"
    name: str  # the test function's name
    title: str  # first line of its docstring, for humans
    max_points: float
    points: float = 0.0
    status: Status = "skipped"
    checks: list[CheckResult] = field(default_factory=list)
    output: str = ""  # short text: why it failed, or the error; capped
    captured: str = ""  # the student's printed output, capped
    figures: list[FigureArtifact] = field(default_factory=list)
    duration: float = 0.0
    hidden: bool = False  # a hidden check (@pytest.mark.hidden): students see it only once grades are published


@dataclass
class ExerciseResult:
    exercise: str  # "03"
    title: str  # "What the model attends to"
    module: str  # path of the graded module, as shown to the student
    tests: list[TestResult] = field(default_factory=list)
    import_error: str | None = None  # the module did not import: every test scores 0
    expected_source: ExpectedSource = "fixtures"
    provenance: dict[str, Any] = field(default_factory=dict)  # from the fixture file
    # Hidden checks this copy of the course does not hold (a student's release): graded only on the
    # autograder, so no report may call the exercise complete.
    hidden_checks: int = 0
    hidden_points: float = 0.0

    @property
    def points(self) -> float:
        return sum(t.points for t in self.tests)

    @property
    def max_points(self) -> float:
        return sum(t.max_points for t in self.tests)

    @property
    def status(self) -> str:
        if self.import_error:
            return "error"
        statuses = {t.status for t in self.tests}
        if not statuses:
            return "skipped"
        if statuses == {"passed"}:
            # Every check here passed, but hidden ones are graded elsewhere: never "passed".
            return "public_passed" if self.hidden_checks else "passed"
        if statuses == {"not_attempted"}:
            return "not_attempted"
        return "partial" if self.points > 0 else "failed"


@dataclass
class RunResult:
    model_id: str
    model_reason: str  # why this model: "--model", "$MECHGRADE_MODEL", "default", "fallback: ..."
    device: str
    graded: str  # "exercises", "solutions" or the submission folder
    banner: str | None = None  # loud notice, e.g. graded on the practice model
    exercises: list[ExerciseResult] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)  # versions, GPU name
    started_at: str = ""  # ISO 8601
    execution_time: float = 0.0  # seconds
    interrupted: str | None = None  # why the run stopped early, if it did
    errors: list[str] = field(default_factory=list)  # collection / internal errors, for the record
    # What importing the graded code said about it: a notebook's skipped magics, its cells that raised.
    notes: list[str] = field(default_factory=list)
    # The grading environment could not grade (a model out of reach, a file the worker cannot
    # read): why. Such a run has no score, and every report says so instead of showing one.
    not_graded: str | None = None
    # Checks that failed because the environment did (grader.sandbox.faults): the run's score may
    # be too low, and it must be graded again once the machine is fixed.
    needs_regrade: list[str] = field(default_factory=list)

    @property
    def points(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def max_points(self) -> float:
        return sum(e.max_points for e in self.exercises)

    @property
    def hidden_checks(self) -> int:
        return sum(e.hidden_checks for e in self.exercises)

    @property
    def hidden_points(self) -> float:
        return sum(e.hidden_points for e in self.exercises)

    def hidden_summary(self) -> str | None:
        """What this run could not grade, for every report: None when nothing is hidden from it."""
        if not self.hidden_checks:
            return None
        checks = "1 hidden check" if self.hidden_checks == 1 else f"{self.hidden_checks} hidden checks"
        points = f"{self.hidden_points:.2f}".rstrip("0").rstrip(".")
        return (f"public checks {f'{self.points:.2f}'.rstrip('0').rstrip('.')}/"
                f"{f'{self.max_points:.2f}'.rstrip('0').rstrip('.')}; {checks} ({points} points) "
                "are graded only on the autograder")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cap(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was cut (student output can be huge)."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [{len(text) - limit} more characters cut]"
