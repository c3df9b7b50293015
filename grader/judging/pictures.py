"""Pictures for the reports, made while judging: a student's figure as PNG, a heatmap of expected
values beside the student's, and the picture of differences (expected, got, got - expected) that a
failed comparison of tensors carries. Each is a FigureArtifact: plain data the reports embed."""

from __future__ import annotations

import base64
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from grader.judging.compare import to_numpy
from grader.judging.results import FigureArtifact
from grader.student.figure_png import figure_png

DPI = 80  # small files; the heatmaps are read, not printed
HEATMAP_CMAP = "viridis"  # perceptually uniform and colour-blind safe



def png_artifact(png: bytes, title: str, caption: str = "", group: str = "") -> FigureArtifact:
    """A picture that arrives as PNG bytes (a student's figure, drawn where their code runs)."""
    return FigureArtifact(title=title, png_base64=base64.b64encode(png).decode("ascii"), caption=caption, group=group)


def figure_to_artifact(
    fig: Figure, title: str, caption: str = "", group: str = ""
) -> FigureArtifact:
    """Render a matplotlib Figure to an inline PNG and close it (loops must not leak figures)."""
    try:
        drawn = figure_png(fig, DPI)
    finally:
        import matplotlib.pyplot as plt  # late: only to release figures pyplot may be tracking

        plt.close(fig)
    png = base64.b64encode(drawn).decode("ascii")
    return FigureArtifact(title=title, png_base64=png, caption=caption, group=group)


def _as_matrix(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on GPU or needing grad
        values = values.detach().cpu().float().numpy()
    try:
        matrix = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"heatmap values must be numeric, got {type(values).__name__}") from error
    if matrix.ndim != 2:
        raise ValueError(f"heatmap values must be 2-D, got shape {tuple(matrix.shape)}")
    if matrix.size == 0:
        raise ValueError(f"heatmap values are empty, shape {tuple(matrix.shape)}")
    bad = int(np.count_nonzero(~np.isfinite(matrix)))
    if bad:
        raise ValueError(f"heatmap values contain {bad} NaN or infinite entries of {matrix.size}")
    return matrix


def _plain(text: Any) -> str:
    # Tokens are arbitrary text: "$" would start mathtext, a newline would break the axis.
    return str(text).replace("$", r"\$").replace("\n", "\\n")


def _labels(labels: Sequence[Any] | None, count: int, name: str, unit: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(count)]
    labels = list(labels)
    if len(labels) != count:
        raise ValueError(f"{name} has {len(labels)} entries but values have {count} {unit}")
    return [_plain(label) for label in labels]


def _tick_step(count: int, most: int = 40) -> int:
    return max(1, math.ceil(count / most))


def heatmap_artifact(
    values: Any,
    x_labels: Sequence[Any] | None,
    y_labels: Sequence[Any] | None,
    title: str,
    caption: str = "",
    group: str = "",
    xlabel: str = "",
    ylabel: str = "",
) -> FigureArtifact:
    """A labelled heatmap with a colour bar, e.g. an attention pattern (rows: query, cols: key).

    Raises ValueError for values that are not a finite, non-empty 2-D array, or labels whose
    count does not match.
    """
    matrix = _as_matrix(values)
    rows, cols = matrix.shape
    xs = _labels(x_labels, cols, "x_labels", "columns")
    ys = _labels(y_labels, rows, "y_labels", "rows")

    # Figure() rather than pyplot: no global state, no GUI backend, safe in any thread.
    xstep, ystep = _tick_step(cols), _tick_step(rows)
    # Margins wide enough for the labels, so that everything is drawn inside the canvas: then one
    # draw suffices (figure_png crops the margins' excess away).
    char = 8 * 0.7 / 72  # inches, at least, per character of an 8-point tick label
    left = char * max(map(len, ys[::ystep])) + 0.6
    bottom = char * max(map(len, xs[::xstep])) + 0.6
    top, right = 0.5, 1.2  # the title; the colour bar and its numbers
    width = min(14.0, max(2.5, 0.32 * cols + 1.0)) + left + right
    height = min(12.0, max(1.5, 0.28 * rows)) + top + bottom
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap=HEATMAP_CMAP, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(0, cols, xstep), xs[::xstep], rotation=90, fontsize=8)
    ax.set_yticks(range(0, rows, ystep), ys[::ystep], fontsize=8)
    ax.set_title(_plain(title))
    ax.set_xlabel(_plain(xlabel))
    ax.set_ylabel(_plain(ylabel))
    return figure_to_artifact(fig, title, caption=caption, group=group)


MATCHES = "your values match these, within the tolerance"  # a reference picture's caption, for a right answer
_remembered: OrderedDict[tuple[Any, ...], FigureArtifact] = OrderedDict()
REMEMBER_AT_MOST = 64  # pictures; a class's reference pictures are a few dozen


def remembered(key: tuple[Any, ...], draw: Callable[[], FigureArtifact]) -> FigureArtifact:
    """The picture `draw` makes, drawn once per process for the same key (which must say
    everything the picture shows). For reference pictures only: they are the same for every
    submission that `mechgrade grade-all` grades in one process, and drawing them was half of the
    grader's own time per submission. A student's picture is always drawn afresh."""
    if key in _remembered:
        _remembered.move_to_end(key)
        return _remembered[key]
    picture = _remembered[key] = draw()
    while len(_remembered) > REMEMBER_AT_MOST:
        _remembered.popitem(last=False)
    return picture


def reference_heatmap(
    values: Any, x_labels: Sequence[Any] | None, y_labels: Sequence[Any] | None, title: str, **options: str
) -> FigureArtifact:
    """heatmap_artifact (with its `options`: caption, group, xlabel, ylabel) for the grader's own
    values, drawn once per process (see `remembered`)."""
    matrix = _as_matrix(values)
    labels = tuple(None if axis is None else tuple(map(str, axis)) for axis in (x_labels, y_labels))
    key = ("heatmap", matrix.shape, matrix.tobytes(), labels, title, tuple(sorted(options.items())))
    return remembered(key, lambda: heatmap_artifact(matrix, x_labels, y_labels, title, **options))


Axis = tuple[str, Sequence[Any] | None]  # (what the axis is, e.g. "query", and its tick labels or None)


def difference_artifact(expected: Any, got: Any, title: str, axes: Sequence[Axis] = ()) -> FigureArtifact | None:
    """The picture of a failed comparison of tensors (see difference_figure), or None."""
    fig = difference_figure(expected, got, title, axes)
    if fig is None:
        return None
    return figure_to_artifact(fig, fig.get_suptitle(), caption="one colour scale for all the pictures")


def difference_figure(expected: Any, got: Any, title: str, axes: Sequence[Axis] = ()) -> Figure | None:
    """Expected, got and got - expected side by side, on one colour scale with one colour bar, for
    a failed comparison of tensors. 1-D values are drawn as one-row strips; higher ranks show the
    2-D slice (over the last two axes) where the two differ most. Different shapes: expected and
    got only. None when there is nothing numeric to draw."""
    want, have = _finite_array(expected), _finite_array(got)
    if want is None or have is None or want.ndim == 0 or have.ndim == 0:
        return None
    where = ""
    if want.shape == have.shape and want.ndim > 2:
        gap = np.abs(have - want).reshape(-1, *want.shape[-2:]).max(axis=(1, 2))
        index = np.unravel_index(int(gap.argmax()), want.shape[:-2])
        want, have = want[index], have[index]
        where = f" (the slice [{', '.join(map(str, index))}, :, :], where they differ most)"
        axes = tuple(axes)[-2:]
    elif want.ndim > 2 or have.ndim > 2:
        return None
    panels = [("expected", _as_2d(want)), ("got", _as_2d(have))]
    if want.shape == have.shape:
        panels.append(("got − expected", _as_2d(have - want)))
    # One named axis per dimension of the drawn values (rows, then columns); a strip has no rows.
    named = list(axes)[-want.ndim:] if axes else []
    (ylabel, yticks), (xlabel, xticks) = ([("", None)] * (2 - len(named)) + named)[-2:]
    values = np.concatenate([panel.ravel() for _, panel in panels])
    low, high = float(values.min()), float(values.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    rows, cols = max(p.shape[0] for _, p in panels), max(p.shape[1] for _, p in panels)
    width = min(5.5, max(2.2, 0.3 * cols + 1.2))
    height = min(5.0, max(1.2, 0.28 * rows + 1.4))
    fig = Figure(figsize=(width * len(panels) + 1.0, height), layout="constrained")
    image = None
    for n, (name, panel) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), n + 1)
        image = ax.imshow(panel, cmap=HEATMAP_CMAP, vmin=low, vmax=high, aspect="auto", interpolation="nearest")
        ax.set_title(name)
        _ticks(ax.set_xticks, xticks, panel.shape[1], rotation=90)
        _ticks(ax.set_yticks, yticks if want.ndim == 2 else None, panel.shape[0], hide=want.ndim == 1)
        ax.set_xlabel(_plain(xlabel))
        if n == 0:
            ax.set_ylabel(_plain(ylabel))
    fig.colorbar(image, ax=fig.axes, shrink=0.9)
    fig.suptitle(_plain(title + where), fontsize=10)
    return fig


def _finite_array(value: Any) -> np.ndarray | None:
    if isinstance(getattr(value, "ungradable_reason", None), str):
        return None
    array = to_numpy(value)
    if array is None or array.dtype.kind not in "biuf" or array.size == 0:
        return None
    array = np.asarray(array, dtype=float)
    return array if np.isfinite(array).all() else np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)


def _as_2d(array: np.ndarray) -> np.ndarray:
    return array.reshape(1, -1) if array.ndim == 1 else array


def _ticks(setter: Any, labels: Sequence[Any] | None, count: int, rotation: int = 0, hide: bool = False) -> None:
    if hide:
        setter([])
        return
    step = _tick_step(count, 30)
    names = [_plain(x) for x in labels] if labels is not None and len(labels) == count else [str(i) for i in range(count)]
    setter(range(0, count, step), names[::step], rotation=rotation, fontsize=7)
