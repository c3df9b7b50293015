"""The exercise stubs as the repository holds them (git HEAD), not as a student left them.

A student who works in this checkout edits exercises/NN/<topic>.py; the package's own tests must
pass all the same, so whatever they read or grade as "the stub" comes from here.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def stub_source(exercise: str, topic: str) -> str:
    """exercises/<exercise>/<topic>.py as committed; the file itself where there is no git history
    (an unpacked archive of the project has no student edits to avoid either)."""
    relative = f"exercises/{exercise}/{topic}.py"
    try:
        return subprocess.run(["git", "show", f"HEAD:{relative}"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return (REPO / relative).read_text()


def write_stubs(folder: Path, topics: dict[str, str]) -> Path:
    """A submission folder laid out like exercises/, holding the pristine stubs."""
    for exercise, topic in topics.items():
        target = folder / exercise / f"{topic}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(stub_source(exercise, topic))
    return folder


def exercises_tree(folder: Path) -> Path:
    """A copy of exercises/ as committed (READMEs, stubs, checks), at `folder`/exercises."""
    target = folder / "exercises"
    try:
        archive = subprocess.run(["git", "archive", "HEAD", "exercises"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(REPO / "exercises", target)  # no git history: the files as found
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return target
