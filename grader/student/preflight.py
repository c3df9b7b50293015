"""The pre-flight: before any student code runs, prove that a worker can do what the checks need.

It runs in a worker process, as the worker's user, inside the same limits and hidden folders as
student code: it imports the modules the exercises use, draws a figure with text and saves it
(matplotlib reads its fonts then), reads the model's files, and writes its scratch folder. A
grading environment that fails any of these would otherwise fail a student's checks (a plot
check losing its points to a font file the worker cannot read): the run stops instead, with one
line that names the path, who cannot read it, and the fix.
"""

from __future__ import annotations

import importlib
import os
import pwd
from pathlib import Path

READ_BYTES = 1 << 16  # enough to prove a file can be read; a model's weights are not read through


def preflight(modules: list[str], model_folders: list[str], scratch: str, confined: bool = False) -> str | None:
    """None when the worker can grade; else one line: what failed, for whom, and the fix.
    `confined`: the worker runs under Landlock (grader.sandbox.landlock), whose refusals no file's
    mode explains."""
    who = "the worker (confined by Landlock)" if confined else _who()
    for name in modules:
        try:
            importlib.import_module(name)
        except PermissionError as exc:
            return _unreadable(exc, who, confined)
        except Exception as exc:  # noqa: BLE001 - any import failure is the environment's
            return (f"{who} cannot import {name} ({type(exc).__name__}: {exc}); reinstall the project's "
                    "dependencies (pip install -e .) in the environment the grader runs in")
    try:
        _draw_a_figure(scratch)
    except PermissionError as exc:
        return _unreadable(exc, who, confined)
    except Exception as exc:  # noqa: BLE001
        return f"{who} cannot draw and save a figure with text ({type(exc).__name__}: {exc}); check matplotlib and its fonts"
    for folder in model_folders:
        try:
            _read_all(Path(folder))
        except PermissionError as exc:
            return _unreadable(exc, who, confined)
        except OSError as exc:
            return f"{who} cannot read the model's files in {folder} ({exc})"
    try:
        probe = Path(scratch) / ".mechgrade-preflight"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return f"{who} cannot write its scratch folder {scratch} ({exc}); check the temporary folder's permissions"
    return None


def _draw_a_figure(scratch: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow([[0.0, 1.0], [1.0, 0.0]])
    ax.set_title("Attention"), ax.set_xlabel("key"), ax.set_ylabel("query")
    ax.set_xticks([0, 1], [" France", " is"])
    fig.tight_layout()  # measures the text: the fonts are read here at the latest
    fig.savefig(Path(scratch) / ".mechgrade-preflight.png")
    plt.close(fig)
    (Path(scratch) / ".mechgrade-preflight.png").unlink()


def _read_all(folder: Path) -> None:
    """Open every file (links followed: the Hugging Face cache links into its blobs); a folder
    that cannot be listed is an error, not an empty folder."""

    def refuse(error: OSError) -> None:
        raise error

    for where, _, files in os.walk(folder, onerror=refuse, followlinks=True):
        for name in sorted(files):
            with open(os.path.join(where, name), "rb") as handle:
                handle.read(READ_BYTES)


def _who() -> str:
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = f"uid {os.getuid()}"
    return f"the worker user ({name})"


def _unreadable(exc: PermissionError, who: str, confined: bool = False) -> str:
    """The path, who cannot read it, and the fix: the highest folder on the way that it cannot
    enter (or the folder or file itself) opened to others."""
    path = Path(exc.filename) if exc.filename else None
    if path is None:
        return f"{who} was refused access ({exc}); make the grader's files readable to it"
    if confined:  # no mode to change: the path is not on the worker's list
        return (f"{who} cannot read {path}: it is outside the folders a worker keeps (grader.sandbox.start); "
                "grade as root, or report it")
    fix = f"chmod a+r {path}"
    for folder in [*reversed(path.parents), path]:  # from / down
        needs = os.R_OK | os.X_OK if folder == path else os.X_OK
        if os.path.isdir(folder) and not os.access(folder, needs):
            where = "" if folder == path else f" (no access to {folder})"
            mode = "o+rx" if folder == path else "o+x"
            return f"{who} cannot read {path}{where}; fix: chmod {mode} {folder} (or install the grader where that user can read it)"
    return f"{who} cannot read {path}; fix: {fix}"
