"""grade-all's canary: the reference solutions are graded first, and a class is graded only if
they score full marks in this grading environment.

A tiny course (no model needed), graded as `mechgrade grade-all` grades a class: once with a
reference solution that loses a check (as a font the worker cannot read made four plot checks
do), once with one that is right.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from graded_project import new_project

from grader.classroom.identity import folder_name

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="isolated grading needs Linux")

CHECKS = '''
    @pytest.mark.points(2)
    def test_add(student, grade):
        """add() adds"""
        grade.compare("add(1, 2)", student.add(1, 2), 3)

    @pytest.mark.points(1)
    def test_sub(student, grade):
        """sub() subtracts"""
        grade.compare("sub(3, 1)", student.sub(3, 1), 2)
'''
RIGHT = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n"
BROKEN = "def add(a, b):\n    return a + b + 1\n\ndef sub(a, b):\n    return a - b\n"


@pytest.fixture
def course() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="mechgrade-canary-"))
    os.chmod(root, 0o755)
    new_project(root, CHECKS, stub=RIGHT, solution=RIGHT)
    (root / "fixtures" / "toy-gpt2").mkdir(parents=True, exist_ok=True)
    (root / "class" / "alice" / "01").mkdir(parents=True)
    (root / "class" / "alice" / "01" / "demo.py").write_text(RIGHT)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def grade_all(course: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MECHGRADE_PROJECT": str(course), "MECHGRADE_MODEL": "toy-gpt2", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "grader", "grade-all", str(course / "class"), "--out", str(course / "out")],
                          cwd=course, env=env, capture_output=True, text=True, timeout=300)


def test_reference_solutions_that_lose_a_check_stop_the_class_before_anyone_is_graded(course: Path) -> None:
    (course / "solutions" / "01" / "demo.py").write_text(BROKEN)
    done = grade_all(course)
    assert done.returncode == 2, done.stderr
    said = [line for line in done.stderr.splitlines() if "reference solutions scored" in line]
    assert said == ["mechgrade grade-all: the reference solutions scored 1/3 in this grading environment, so it would "
                    "cost students points too; nobody was graded. Failed: 1.1 01 · add() adds. See why with "
                    "`mechgrade grade --isolate --solutions`"], done.stderr
    assert not (course / "out" / folder_name("alice")).exists(), "a student was graded"
    assert not (course / "out" / ".canary").exists()
    assert not list((course / "out").glob("canary*")), "the reference solutions were filed as a student"


def test_reference_solutions_with_full_marks_let_the_class_be_graded(course: Path) -> None:
    done = grade_all(course)
    assert done.returncode == 0, done.stderr
    assert "the reference solutions scored full marks" in done.stderr
    assert (course / "out" / folder_name("alice") / "results.json").is_file()
    assert not (course / "out" / ".canary").exists()
    assert not list((course / "out").glob("canary*")), "the reference solutions were filed as a student"
    rows = (course / "out" / "grades.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("alice,"), rows  # the canary is no student
