"""grader.student.figure_png: a figure as the PNG savefig(bbox_inches="tight") would give, drawn once
where the figure's drawing fits its canvas (a report draws a dozen pictures per submission)."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure
from PIL import Image

from grader.student.figure_png import figure_png

DPI = 80


@pytest.fixture
def draws(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Figure]]:
    """Every draw of a figure, the costly part of a picture."""
    seen: list[Figure] = []
    original = Figure.draw

    def counted(self: Figure, renderer: object) -> None:
        seen.append(self)
        original(self, renderer)

    monkeypatch.setattr(Figure, "draw", counted)
    yield seen
    plt.close("all")


def _size(png: bytes) -> tuple[int, int]:
    return Image.open(BytesIO(png)).size


def _tight_size(fig: Figure) -> tuple[int, int]:
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return _size(buffer.getvalue())


def _fits() -> Figure:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [2, 0, 1])
    ax.set_xlabel("layer")
    fig.tight_layout()
    return fig


def _labels_past_the_edge() -> Figure:
    fig, ax = plt.subplots(figsize=(3, 2))  # no tight_layout: long rotated labels hang below
    ax.imshow([[0, 1, 2], [2, 1, 0]])
    ax.set_xticks(range(3), ["<|endoftext|>", " capital", " France"], rotation=45)
    ax.set_yticks(range(2), ["latent 1", "latent 20"])
    return fig


def _touching_the_edge() -> Figure:
    fig = plt.figure(figsize=(2, 2))
    ax = fig.add_axes((0, 0, 1, 1))  # fills the canvas: no room for the margin
    ax.imshow([[0, 1], [1, 0]], aspect="auto")
    ax.set_axis_off()
    return fig


def test_a_figure_that_fits_is_drawn_once_and_cropped_as_savefig_would(draws: list[Figure]) -> None:
    fig = _fits()
    png = figure_png(fig, DPI)
    assert len(draws) == 1
    width, height = _size(png)
    tight_width, tight_height = _tight_size(fig)
    assert abs(width - tight_width) <= 2 and abs(height - tight_height) <= 2
    assert width < 4 * DPI and height < 3 * DPI  # cropped, not the whole canvas


def test_labels_drawn_past_the_canvas_are_in_the_picture(draws: list[Figure]) -> None:
    fig = _labels_past_the_edge()
    png = figure_png(fig, DPI)
    width, height = _size(png)
    assert height > 2 * DPI  # taller than the canvas: the rotated labels below it are kept
    tight_width, tight_height = _tight_size(fig)
    assert abs(width - tight_width) <= 2 and abs(height - tight_height) <= 2


def test_a_drawing_that_touches_the_edge_loses_only_its_margin(draws: list[Figure]) -> None:
    # Its margin would reach past the canvas; it is white, so the picture just has less of it
    # (savefig would draw the whole figure a second time for it).
    fig = _touching_the_edge()
    png = figure_png(fig, DPI)
    assert len(draws) == 1
    assert _size(png) == (2 * DPI, 2 * DPI)
