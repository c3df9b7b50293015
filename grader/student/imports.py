"""Load student code into this process: a module from a file, a notebook's cells as a module, or
the namespace of this process's ``__main__`` (a Jupyter kernel's). Any failure is an ImportFailed
whose message is meant for the student."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from grader.student.frames import format_syntax_error, student_frames
from grader.student.notebook_cells import NotebookError, run_notebook

# The path that names the namespace of the process's __main__ (a Jupyter kernel's) instead of a file.
KERNEL_NAMESPACE = "<the notebook's namespace>"


class ImportFailed(Exception):
    """The graded module could not be imported; the message is meant for the student."""


def import_file(path: Path, module_name: str, passthrough: tuple[type[BaseException], ...] = ()) -> ModuleType:
    """Import one file as `module_name`, fresh. Any failure, a BaseException included, is an
    ImportFailed that costs this module's exercise only."""
    if not path.is_file():
        raise ImportFailed(f"{path.name} not found: the graded folder must contain it")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportFailed(f"{path.name} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise ImportFailed(format_syntax_error(exc)) from None
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        if isinstance(exc, passthrough):
            raise
        raise ImportFailed(f"importing {path.name} failed:\n{student_frames(exc)}") from None
    return module


def import_notebook(path: Path, module_name: str, passthrough: tuple[type[BaseException], ...] = ()) -> tuple[ModuleType, list[str]]:
    """Run a notebook's code cells as one module (grader.student.notebook_cells); (the module, notes).
    A notebook that cannot be read is an ImportFailed, like a module with a syntax error."""
    if not path.is_file():
        raise ImportFailed(f"{path.name} not found: the graded folder must contain it")
    try:
        return run_notebook(path, module_name, passthrough)
    except NotebookError as exc:
        raise ImportFailed(str(exc)) from None
