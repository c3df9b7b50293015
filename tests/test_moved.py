"""Check files written before the package's folders still import: the old paths hand out the new
objects, with a DeprecationWarning naming where they live now (grader/moved.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# The imports of the check files of exercises 01-07 as they stood before the layout (commit 8b5b7fd).
OLD_IMPORTS = [
    ("grader.compare", ["compare", "Tolerance", "matches"], "grader.judging.compare"),
    ("grader.prompts", ["CLEAN_PROMPT", "APART_PROMPT", "CLEAN_ANSWERS", "CORRUPTED_PROMPT"], "grader.judging.prompts"),
    ("grader.prompts", ["HELD_OUT_PROMPT", "HELD_OUT_ANSWERS", "HELD_OUT_ADJACENT"], "grader.judging.held_out"),
    ("grader.report_html", ["MATCHES", "figure_to_artifact", "reference_heatmap", "remembered"], "grader.judging.pictures"),
    ("grader.scoring", ["Raised", "attempt"], "grader.judging.scoring"),
    ("grader.session", ["session_of"], "grader.grading.session"),
    ("grader.sandbox.executor", ["HookPointName"], "grader.student.executor"),
]


@pytest.mark.parametrize(("old", "names", "new"), OLD_IMPORTS, ids=[f"{o}:{n[0]}" for o, n, _ in OLD_IMPORTS])
def test_an_old_import_path_gives_the_new_objects_and_says_where_they_moved(old: str, names: list[str], new: str) -> None:
    # A fresh interpreter: the warning comes once, when the old name is first imported.
    code = (f"import importlib, warnings\nwarnings.simplefilter('error')\n"
            f"try:\n    from {old} import {', '.join(names)}\nexcept DeprecationWarning as warned:\n    print('WARNED', warned)\n"
            f"warnings.simplefilter('ignore')\nfrom {old} import {', '.join(names)}\n"
            f"new = importlib.import_module({new!r})\n"
            f"print('SAME', all(globals()[n] is getattr(new, n) for n in {names!r}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"WARNED {old} has moved: import from " in done.stdout and new in done.stdout, done.stdout
    assert "SAME True" in done.stdout, done.stdout


def test_a_name_that_never_existed_is_an_import_error_naming_the_new_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "grader.compare", raising=False)  # imported afresh: the warning comes
    with pytest.warns(DeprecationWarning), pytest.raises(ImportError, match="nothing_like_this"):
        from grader.compare import nothing_like_this  # noqa: F401


def test_a_module_that_never_existed_is_still_not_found() -> None:
    with pytest.raises(ModuleNotFoundError):
        import grader.nothing_like_this  # noqa: F401
