"""Errors as a student reads them: the student's own frames, never the grader's."""

from __future__ import annotations

import sysconfig
import traceback
from pathlib import Path

MAX_MESSAGE = 4000  # characters of an exception message kept
# Frames in these are the grader's or Python's, never the student's: the package, the standard library.
_HIDDEN = (str(Path(__file__).resolve().parent.parent), sysconfig.get_paths()["stdlib"], "<frozen")


def format_syntax_error(exc: SyntaxError) -> str:
    where = f"{Path(exc.filename).name if exc.filename else '?'}, line {exc.lineno}"
    lines = [f"SyntaxError in {where}: {exc.msg}"]
    if exc.text:
        lines.append("    " + exc.text.rstrip("\n"))
        if exc.offset:
            lines.append("    " + " " * (exc.offset - 1) + "^")
    return "\n".join(lines)


def student_traceback(exc: BaseException, student_dirs: list[Path]) -> str:
    """The traceback cut down to frames in the student's files, then the error itself."""
    roots = [d.resolve() for d in student_dirs]
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if any(_is_within(Path(frame.filename), root) for root in roots) and not Path(frame.filename).name.startswith("test_")
    ]
    error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return "\n".join([*format_frames(frames), error])


def format_frames(frames: list[traceback.FrameSummary]) -> list[str]:
    """Frames as a student reads them: file name, line, function, the line of code."""
    return [f'  File "{Path(f.filename).name}", line {f.lineno}, in {f.name}\n    {f.line}' for f in frames]


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except (ValueError, OSError):
        return False


def student_frames(exc: BaseException) -> str:
    """The traceback without the grader's frames: the student reads only their own code."""
    try:
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if not f.filename.startswith(_HIDDEN) and "site-packages" not in f.filename]
        lines = format_frames(frames)
    except BaseException:
        lines = []
    return "\n".join([*lines, describe_exception(exc)])


def describe_exception(exc: BaseException) -> str:
    """The exception's own line ("ValueError: ..."), cut to MAX_MESSAGE; never raises."""
    try:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    except BaseException:
        text = type(exc).__name__
    return text[:MAX_MESSAGE]
