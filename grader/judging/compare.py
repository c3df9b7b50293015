"""Compare what a student returned with what was expected, and say how they differ.

One path serves every kind of value: scalars, tensors and arrays, lists and tuples, strings.
Shape and kind are checked before values; values are compared with ``atol``/``rtol`` the way
``numpy.isclose`` does, NaN equal to NaN. The failure text follows pytest-regressions: a headline,
the shape, how many elements differ and what share, the largest absolute and relative error, and
the first few differing indices with expected and got.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

K = TypeVar("K")  # a mistake's key: its hint, or a named Mistake
MAX_LISTED = 5  # differing indices shown in a failure message
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4


@dataclass(frozen=True)
class Tolerance:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    def __str__(self) -> str:
        return f"atol={self.atol:g}, rtol={self.rtol:g}"


@dataclass(frozen=True)
class Comparison:
    ok: bool
    headline: str = ""  # one line: what is wrong
    details: str = ""  # the rest: shapes, error statistics, differing indices
    max_abs: float = 0.0  # largest absolute difference (numeric values only)

    @property
    def message(self) -> str:
        return f"{self.headline}\n{self.details}".rstrip()


def to_numpy(value: Any) -> np.ndarray | None:
    """A numeric array for tensors, arrays, numbers and nested numeric lists; None otherwise."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return np.asarray(value)
    if isinstance(value, (list, tuple)) and _is_numeric_nest(value):
        try:
            return np.asarray(value, dtype=float)
        except ValueError:  # ragged: compared item by item
            return None
    return None


def _is_numeric_nest(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_numeric_nest(v) for v in value)
    return isinstance(value, (bool, int, float, np.number)) and not isinstance(value, str)


def _kind(array: np.ndarray) -> str:
    if array.dtype.kind == "b":
        return "bool"
    if array.dtype.kind in "iu":
        return "integer"
    if array.dtype.kind in "fc":
        return "float"
    return array.dtype.name


def compare(got: Any, expected: Any, tol: Tolerance = Tolerance()) -> Comparison:
    """Compare any supported value; `expected` decides what kind of comparison is made."""
    __tracebackhide__ = True
    ungradable = getattr(got, "ungradable_reason", None)  # a handle: an object that stayed in the sandbox
    if isinstance(ungradable, str):
        return Comparison(False, ungradable)
    if isinstance(expected, str):
        return _compare_strings(got, expected)
    want = to_numpy(expected)
    if want is not None:
        return _compare_arrays(got, want, tol)
    if isinstance(expected, (list, tuple)):
        return _compare_sequences(got, expected, tol)
    if got == expected:
        return Comparison(True)
    return Comparison(False, f"expected {short(expected)}, got {short(got)}")


def _compare_strings(got: Any, expected: str) -> Comparison:
    if not isinstance(got, str):
        return Comparison(False, f"expected a str, got {type(got).__name__}: {short(got)}")
    if got == expected:
        return Comparison(True)
    return Comparison(False, f"expected {expected!r}, got {got!r}")


def _compare_sequences(got: Any, expected: list | tuple, tol: Tolerance) -> Comparison:
    """Lists of mixed items, such as [(layer, head, weight), ...]: length, then item by item."""
    if not isinstance(got, (list, tuple)):
        return Comparison(False, f"expected a list of {len(expected)} items, got {type(got).__name__}: {short(got)}")
    if len(got) != len(expected):
        return Comparison(
            False,
            f"expected {len(expected)} items, got {len(got)}",
            f"expected: {short(expected)}\ngot:      {short(got)}",
        )
    for index, (g, e) in enumerate(zip(got, expected)):
        item = compare(g, e, tol)
        if not item.ok:
            return Comparison(
                False,
                f"item {index} differs: {item.headline}",
                f"expected: {short(expected)}\ngot:      {short(got)}",
                item.max_abs,
            )
    return Comparison(True)


def _compare_arrays(got: Any, want: np.ndarray, tol: Tolerance) -> Comparison:
    have = to_numpy(got)
    if have is None:
        return Comparison(False, f"expected a numeric value of shape {tuple(want.shape)}, got {type(got).__name__}: {short(got)}")
    if have.shape != want.shape:
        return Comparison(False, f"shape mismatch: expected {tuple(want.shape)}, got {tuple(have.shape)}")
    if _kind(have) != _kind(want) and "float" not in (_kind(have), _kind(want)):
        return Comparison(False, f"dtype mismatch: expected {_kind(want)} values, got {_kind(have)}")
    have_f = have.astype(float)
    want_f = want.astype(float)
    close = np.isclose(have_f, want_f, atol=tol.atol, rtol=tol.rtol, equal_nan=True)
    abs_err = np.abs(have_f - want_f)
    finite = np.isfinite(abs_err)
    max_abs = float(abs_err[finite].max()) if finite.any() else 0.0
    if close.all():
        return Comparison(True, max_abs=max_abs)
    return Comparison(False, *_describe_difference(have_f, want_f, close, abs_err, tol), max_abs=max_abs)


def _describe_difference(
    have: np.ndarray, want: np.ndarray, close: np.ndarray, abs_err: np.ndarray, tol: Tolerance
) -> tuple[str, str]:
    n_diff = int((~close).sum())
    share = n_diff / close.size
    if have.ndim == 0:
        headline = f"expected {want.item():.6g}, got {have.item():.6g} ({tol})"
    else:
        headline = f"values differ: {n_diff} of {close.size} elements ({share:.1%}) outside {tol}"
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_err = abs_err / np.abs(want)
    bad_abs = abs_err[~close]
    bad_rel = rel_err[~close]
    lines = [f"shape: {tuple(want.shape)}"]
    if np.isfinite(bad_abs).any():
        lines.append(f"largest absolute error: {np.nanmax(np.where(np.isfinite(bad_abs), bad_abs, np.nan)):.6g}")
    if np.isfinite(bad_rel).any():
        lines.append(f"largest relative error: {np.nanmax(np.where(np.isfinite(bad_rel), bad_rel, np.nan)):.6g}")
    if have.ndim > 0:
        lines.append(f"first differing {'index' if n_diff == 1 else 'indices'}:")
        lines.append(f"  {'index':<16}{'expected':>14}{'got':>14}")
        for index in np.argwhere(~close)[:MAX_LISTED]:
            key = tuple(int(i) for i in index)
            lines.append(f"  {str(key):<16}{want[key]:>14.6g}{have[key]:>14.6g}")
        if n_diff > MAX_LISTED:
            lines.append(f"  ... and {n_diff - MAX_LISTED} more")
    return headline, "\n".join(lines)


def matches(got: Any, candidate: Any, tol: Tolerance = Tolerance()) -> bool:
    """Whether `got` equals `candidate` within tolerance; any error in comparing means no."""
    try:
        return compare(got, candidate, tol).ok
    except Exception:
        return False


def diagnose(got: Any, mistakes: Mapping[K, Any], tol: Tolerance = Tolerance()) -> K | None:
    """The key of the first known mistake whose result `got` reproduces, if any.

    `mistakes` maps a mistake (a hint, "the pattern is transposed: [key, query]", or a named
    grader.judging.mistakes.Mistake) to the value that mistake produces. Values may be callables,
    evaluated only when needed (and ignored if they raise).
    """
    for hint, value in mistakes.items():
        try:
            candidate = value() if callable(value) else value
        except Exception:
            continue
        if matches(got, candidate, tol):
            return hint
    return None


def short(value: Any, limit: int = 200) -> str:
    """A one-line form of a value for messages: tensors by shape, everything else by repr."""
    array = to_numpy(value) if not isinstance(value, (list, tuple)) else None
    if array is not None and array.ndim > 0:
        text = f"{type(value).__name__}(shape={tuple(array.shape)}, dtype={array.dtype})"
    else:
        try:
            text = repr(value)
        except Exception:
            text = f"<{type(value).__name__} that could not be shown>"
    return text if len(text) <= limit else text[: limit - 1] + "…"

