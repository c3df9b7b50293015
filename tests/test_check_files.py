"""How the exercises' check files are written: every soft check that can fail carries a hint, so
no failure reaches a student without advice on what to do."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHECK_FILES = sorted((REPO / "exercises").glob("[0-9][0-9]/test_[0-9][0-9]_*.py"))
# Positional index of `hint` in each Grade method (grader/judging/scoring.py).
HINT_POSITION = {"check": 3, "compare": 6, "guard": 3, "wrong_kind": 3, "note": 2}


def _grade_calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "grade"
            and node.func.attr in HINT_POSITION]


def _cannot_fail(call: ast.Call) -> bool:
    """grade.check(name, True) or grade.guard(name, True, given=...): a pass, or only whether it was earned."""
    return (call.func.attr in ("check", "guard") and len(call.args) > 1  # type: ignore[union-attr]
            and isinstance(call.args[1], ast.Constant) and call.args[1].value is True)


def test_there_are_check_files() -> None:
    assert len(CHECK_FILES) >= 4


@pytest.mark.parametrize("path", CHECK_FILES, ids=lambda p: p.parent.name)
def test_every_check_that_can_fail_has_a_hint(path: Path) -> None:
    missing = [
        f"line {call.lineno}: {ast.unparse(call)[:90]}"
        for call in _grade_calls(path)
        if not _cannot_fail(call)
        and "hint" not in {k.arg for k in call.keywords}
        and len(call.args) <= HINT_POSITION[call.func.attr]  # type: ignore[union-attr]
    ]
    assert not missing, f"{path.name}: checks without a hint:\n" + "\n".join(missing)
