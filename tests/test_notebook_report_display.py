"""check() in a notebook shows the HTML report in the cell, and nothing else (no IPython warning)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from grader.notebooks import check

display_module = pytest.importorskip("IPython.display")


def test_the_report_is_shown_in_an_iframe_without_ipythons_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[Any] = []
    monkeypatch.setattr(display_module, "display", lambda obj: shown.append(obj))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # IPython's UserWarning ("Consider using IPython.display.IFrame") fails this
        check._show_html('<html><body><p class="score">7 points</p></body></html>')
    assert len(shown) == 1
    assert '<iframe srcdoc="&lt;html&gt;&lt;body&gt;&lt;p class=&quot;score&quot;&gt;7 points' in shown[0].data
