"""Soft checks with partial credit, and the rules that turn a test's outcome into points.

A test receives a ``grade`` fixture and records checks on it; every failed check is also
reported through pytest-check, so one run shows all of them instead of stopping at the first.
Points follow the share of check weight that passed, and follow work: a property that an answer
doing nothing also has (``guard``) earns its share only with a right answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_check import check as soft

from grader.judging.compare import Tolerance, compare, diagnose, short
from grader.judging.fixtures import Expected
from grader.judging.mistakes import Mistake, hint_and_name
from grader.judging.results import CheckResult, FigureArtifact
from grader.sandbox.client import StudentError, WorkerLost

if TYPE_CHECKING:
    from grader.judging.pictures import Axis

Mistakes = Mapping[str | Mistake, Any]  # hint or named mistake -> the value it produces (or a callable making it)
NOT_EARNED = "holds, but an answer that does nothing would pass it too: it counts once the answer is right"


@dataclass(frozen=True)
class Raised:
    """What a student function raised, kept as its answer so that a check can grade it (and fail
    it) like any other answer: a comparison reads "your token_index raised ValueError: ...", not a
    comparison with a string."""

    error: StudentError

    @property
    def ungradable_reason(self) -> str:  # what grader.judging.compare reports for an answer it cannot grade
        return self.error.headline

    def __repr__(self) -> str:
        return self.error.headline


def attempt(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)`, or `Raised` when the student's code raised an ordinary error.
    A stub's NotImplementedError and a lost worker still end the check (not attempted / error)."""
    __tracebackhide__ = True
    try:
        return function(*args, **kwargs)
    except (NotImplementedError, WorkerLost):
        raise
    except StudentError as error:
        return Raised(error)


class Grade:
    """The checks of one test. Each method records a CheckResult and returns whether it passed."""

    def __init__(self) -> None:
        self.checks: list[CheckResult] = []
        self.figures: list[FigureArtifact] = []

    def check(
        self,
        name: str,
        passed: bool,
        message: str = "",
        hint: str | Mistake | None = None,
        weight: float = 1.0,
        expected: Any = None,
        got: Any = None,
    ) -> bool:
        """A condition; `message` says what was expected when it does not hold. A `hint` that is
        a Mistake names the mistake a failure shows."""
        __tracebackhide__ = True
        passed = bool(passed)
        text, mistake = hint_and_name(hint)
        result = CheckResult(
            name,
            passed,
            weight,
            "" if passed else message,
            None if passed else text,
            None if expected is None else short(expected, 80),
            None if got is None else short(got, 80),
            mistake=None if passed else mistake,
        )
        self._record(result)
        return passed

    def guard(
        self,
        name: str,
        passed: bool,
        message: str = "",
        hint: str | Mistake | None = None,
        weight: float = 1.0,
        expected: Any = None,
        got: Any = None,
        *,
        given: bool,
    ) -> bool:
        """A property that an answer doing nothing also has (no hook left behind, the input left
        untouched, the right shape): it earns its share only with the answer it guards.

        `given` says whether that answer was right. A guard that holds without it is recorded as
        not earned (no points, shown once, no second failure message); a guard that fails is a
        failure either way, since the student has something to fix.
        """
        __tracebackhide__ = True
        if bool(passed) and not given:
            self.checks.append(CheckResult(name, False, weight, NOT_EARNED, None, not_earned=True))
            return True
        return self.check(name, passed, message, hint, weight, expected, got)

    def wrong_kind(self, name: str, got: Any, wanted: str, hint: str | Mistake) -> bool:
        """An answer of the wrong kind (None, an error, a dict for a list): a failure that says
        what came back, in the student's terms. Returns False."""
        __tracebackhide__ = True
        kept = getattr(got, "type_name", None)  # an object that stayed in the sandbox: a Figure, an Axes
        if isinstance(got, Raised):
            message = got.ungradable_reason
        elif isinstance(kept, str):
            message = f"expected {wanted}, got {kept}"
        else:
            message = f"expected {wanted}, got {type(got).__name__}: {short(got)}"
        return self.check(name, False, message, hint)

    def note(self, name: str, message: str, hint: str | Mistake) -> None:
        """Something the student should fix that this check does not grade (a broken function this
        one depends on, graded in its own check): listed with the failures, worth no points, and
        it does not fail the test. A `hint` that is a Mistake names that root cause: the class page
        counts this test's failures under it, not as mistakes of their own."""
        text, mistake = hint_and_name(hint)
        self.checks.append(CheckResult(name, False, 0.0, message, text, mistake=mistake))

    def compare(
        self,
        name: str,
        got: Any,
        want: Expected | Any,
        tol: Tolerance | None = None,
        mistakes: Mistakes | Callable[[Any], Mistakes] | None = None,
        hint: str | Mistake | None = None,
        weight: float = 1.0,
        axes: Sequence[Axis] = (),
    ) -> bool:
        """`got` against an expected value; on failure, name a known mistake `got` reproduces.

        `mistakes` maps hints to the values those mistakes give; it may be a function of the
        expected value (``lambda want: {Mistake("transposed", "..."): want.T}``). A key that is a
        Mistake names the mistake for the class page. `hint` is the fallback advice.
        `axes` names the value's dimensions for the picture a failed tensor comparison gets,
        ``(("query", str_tokens), ("key", str_tokens))``: a name and tick labels (or None) each.
        """
        __tracebackhide__ = True
        value = want.value if isinstance(want, Expected) else want
        tolerance = tol or (want.tol if isinstance(want, Expected) else Tolerance())
        result = compare(got, value, tolerance)
        if result.ok:
            self._record(CheckResult(name, True, weight, expected=short(value, 80), got=short(got, 80)))
            return True
        known = mistakes(value) if callable(mistakes) else mistakes
        likely = diagnose(got, dict(known), tolerance) if known else None
        text, mistake = hint_and_name(likely or hint)
        self._record(
            CheckResult(
                name,
                False,
                weight,
                result.message,  # numeric headlines name the tolerance
                text,
                short(value, 80),
                short(got, 80),
                picture=_difference_picture(value, got, name, axes),
                mistake=mistake,
            )
        )
        return False

    def figure(self, artifact: FigureArtifact) -> None:
        self.figures.append(artifact)

    def student_figure(self, answer: Any, reference: FigureArtifact) -> Any:
        """The description of the Figure a plotting function returned (a FigureInfo), with the
        student's picture beside `reference` in the report; None, and a failed check, when the
        answer is not a Figure. Returning a Figure earns nothing by itself (an empty one is one)."""
        __tracebackhide__ = True
        # late: matplotlib only for checks that draw
        from grader.judging.pictures import png_artifact

        fig = getattr(answer, "figure", None)
        if fig is None:
            self.wrong_kind("returns the Figure", answer, "a matplotlib Figure",
                            hint="return fig (from fig, ax = plt.subplots()); don't call plt.show() and don't "
                                 "return the Axes")
        elif fig.png:
            self.figure(png_artifact(fig.png, "your plot", group=reference.group))
        self.figure(reference)
        return fig

    def _record(self, result: CheckResult) -> None:
        __tracebackhide__ = True
        self.checks.append(result)
        if not result.passed:
            text = f"{result.name}: {result.message}"
            if result.hint:
                text += f"\nhint: {result.hint}"
            soft.fail(text)

    # ---- scoring ----

    @property
    def any_failed(self) -> bool:
        """Whether a check that carries points failed (a note carries none)."""
        return any(not c.passed and c.weight > 0 for c in self.checks)

    def share_passed(self) -> float:
        total = sum(c.weight for c in self.checks)
        if total == 0:
            return 1.0
        return sum(c.weight for c in self.checks if c.passed) / total


def _difference_picture(expected: Any, got: Any, name: str, axes: Sequence[Axis]) -> FigureArtifact | None:
    """The picture of a failed tensor comparison; a picture that cannot be drawn is left out,
    it never costs the grade."""
    # late: matplotlib only when a picture is drawn
    from grader.judging.pictures import difference_artifact

    try:
        return difference_artifact(expected, got, name, axes)
    except Exception:
        return None


def points_for(max_points: float, grade: Grade | None, raised: bool) -> float:
    """Points of a finished test.

    A test whose code raised scores 0, even if some checks passed before: the checks after the
    error never ran, so their share is unknown. Tests are kept small so this stays fair.
    Otherwise points follow the share of check weight that passed (all of it for a test with
    no soft checks that passed).
    """
    if raised:
        return 0.0
    if grade is None or not grade.checks:
        return max_points
    return round(max_points * grade.share_passed(), 4)
