"""Where the course project is: the folder that holds exercises/, solutions/ and fixtures/.

In a checkout with an editable install (the README's set-up) that is the folder above this
package. Installed from a wheel, the package sits in site-packages, away from any course: the
project is then the one $MECHGRADE_PROJECT names, else the nearest folder at or above the working
directory that holds exercises/ and fixtures/ (the grading processes mechgrade starts run there).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ENV = "MECHGRADE_PROJECT"
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def is_project(folder: Path) -> bool:
    return (folder / "exercises").is_dir() and (folder / "fixtures").is_dir()


def find_project_root(cwd: Path | None = None) -> Path:
    named = os.environ.get(PROJECT_ENV)
    if named:
        return Path(named).expanduser().resolve()
    if is_project(_PACKAGE_PARENT):
        return _PACKAGE_PARENT
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if is_project(folder):
            return folder
    return here  # none: what is missing (exercises/, a model's folder) is named where it is needed


PROJECT_ROOT = find_project_root()
EXERCISES_DIR = PROJECT_ROOT / "exercises"


def known_exercises() -> str:
    """The exercise folders there are ("01, 02, ..."), for a message that refuses an unknown one."""
    return ", ".join(sorted(p.name for p in EXERCISES_DIR.iterdir() if p.is_dir() and p.name.isdigit()))
