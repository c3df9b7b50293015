"""A matplotlib Figure as PNG bytes, drawn once.

``savefig(bbox_inches="tight")`` draws a figure twice: once to find what it covers, once to
render it there. Drawing (laying out every tick label) is nearly all of a picture's cost, and a
grading run draws a dozen pictures per submission, in the grader (the reports) and in the worker
(a student's figure). Here the figure is drawn once and the drawn pixels are cropped to the same
box; a figure that draws beyond its own canvas (a student's, often) goes to savefig, as before.
"""

from __future__ import annotations

import math
from io import BytesIO
from typing import Any

import numpy as np

PAD_INCHES = 0.1  # savefig's default pad_inches


def figure_png(fig: Any, dpi: float) -> bytes:
    """The figure at `dpi`, cropped to what it draws plus a small margin (savefig's "tight")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    canvas.draw()
    drawn = fig.get_tightbbox(canvas.get_renderer())  # in inches
    width, height = fig.get_size_inches()
    if drawn.x0 < 0 or drawn.y0 < 0 or drawn.x1 > width or drawn.y1 > height:  # drawn beyond the canvas
        return _savefig(fig, dpi, drawn.padded(PAD_INCHES))
    # The margin is only white: where the canvas ends before it, the picture has less of it (a
    # figure whose labels touch its edge would otherwise be drawn a second time, by savefig).
    box = drawn.padded(PAD_INCHES)
    pixels = np.asarray(canvas.buffer_rgba())
    rows, columns = pixels.shape[:2]
    left, right = max(int(box.x0 * dpi), 0), min(math.ceil(box.x1 * dpi), columns)
    top, bottom = max(rows - math.ceil(box.y1 * dpi), 0), min(rows - int(box.y0 * dpi), rows)
    buffer = BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels[top:bottom, left:right])).save(buffer, format="png")
    return buffer.getvalue()


def _savefig(fig: Any, dpi: float, box: Any) -> bytes:
    """savefig into a known box: one draw. But a figure that ran tight_layout() keeps a
    placeholder layout engine, which lays out nothing and makes savefig draw a second time."""
    buffer = BytesIO()
    engine = fig.get_layout_engine()
    placeholder = type(engine).__name__ == "PlaceHolderLayoutEngine" and hasattr(fig, "_layout_engine")
    if placeholder:
        fig._layout_engine = None
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches=box)
    finally:
        if placeholder:
            fig._layout_engine = engine
    return buffer.getvalue()
