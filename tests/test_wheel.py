"""A wheel built from the repository installs and grades: ``pip install .`` (without ``-e``) and an
install from a git URL give the whole package.

The wheel is built from a copy of the tracked files (a build writes build/ and *.egg-info beside
its sources) and installed with ``--no-deps`` into a fresh venv that sees this environment's
packages, so nothing is downloaded. It then grades exercise 03 of a course folder that holds no
``grader/`` of its own, so every module the run needs comes from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COURSE_FOLDERS = ("exercises", "solutions", "fixtures")


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name and (REPO / name).is_file()]


def copy_files(names: list[str], target: Path) -> Path:
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = copy_files(tracked_files(), tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True)
    (built,) = out.glob("mechgrade-*.whl")
    return built


def test_the_wheel_holds_every_module_and_template_of_the_package(wheel: Path) -> None:
    expected = {name for name in tracked_files()
                if name.startswith("grader/") and name.endswith((".py", ".j2", "py.typed"))}
    assert expected, "found no package files: is this a git checkout?"
    with zipfile.ZipFile(wheel) as archive:
        held = set(archive.namelist())
    missing = sorted(expected - held)
    assert not missing, f"the wheel lacks {missing}"


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel in it; this environment's packages (torch, pytest...) are seen
    through a .pth file, after the venv's own."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    return venv


def test_the_installed_wheel_grades_an_exercise_of_a_course_folder(installed: Path, tmp_path: Path) -> None:
    course = copy_files([name for name in tracked_files() if name.split("/")[0] in COURSE_FOLDERS]
                        + ["pyproject.toml"], tmp_path / "course")
    assert not (course / "grader").exists()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "MECHGRADE_PROJECT")}
    env["HF_HUB_OFFLINE"] = "1"
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import grader; print(grader.__file__)"],
                           cwd=course, env=env, capture_output=True, text=True, check=True).stdout
    assert Path(where).resolve().is_relative_to(installed.resolve()), where

    results = tmp_path / "results.json"
    graded = subprocess.run([str(installed / "bin" / "mechgrade"), "grade", "--solutions", "--exercise", "03",
                             "--model", "toy-gpt2", "--report-html", "", "--gradescope-json", str(results)],
                            cwd=course, env=env, capture_output=True, text=True, timeout=600)
    assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-3000:]
    document = json.loads(results.read_text())
    assert document["tests"], document
    assert document["score"] == sum(test["max_score"] for test in document["tests"]) > 0
