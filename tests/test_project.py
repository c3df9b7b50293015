"""Where the course project is found: the checkout around the package, else $MECHGRADE_PROJECT,
else the nearest folder at or above the working directory holding exercises/ and fixtures/."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader import project


def course(folder: Path) -> Path:
    (folder / "exercises").mkdir(parents=True)
    (folder / "fixtures").mkdir()
    return folder


def test_a_checkout_grades_itself_wherever_it_is_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(project.PROJECT_ENV, raising=False)
    elsewhere = course(tmp_path / "another-course")
    assert project.find_project_root(cwd=elsewhere) == Path(project.__file__).resolve().parent.parent


def test_installed_away_from_a_checkout_the_nearest_course_folder_above_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(project.PROJECT_ENV, raising=False)
    monkeypatch.setattr(project, "_PACKAGE_PARENT", tmp_path / "site-packages")
    root = course(tmp_path / "course")
    (root / "exercises" / "03").mkdir()
    assert project.find_project_root(cwd=root / "exercises" / "03") == root.resolve()
    assert project.find_project_root(cwd=tmp_path) == tmp_path.resolve()  # none: where it was started


def test_the_environment_names_the_project_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named = course(tmp_path / "named")
    monkeypatch.setenv(project.PROJECT_ENV, str(named))
    assert project.find_project_root(cwd=course(tmp_path / "other")) == named.resolve()
