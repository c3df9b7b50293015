"""The check-file API's old import paths, kept working after the package was laid out in folders.

Check files written before the layout import ``grader.compare``, ``grader.prompts``,
``grader.report_html`` and a few more. Those modules now live in folders (``grader.judging``,
``grader.grading``, ``grader.student``); each old name still imports, as a module that hands out
the same objects as the new ones, with a DeprecationWarning that names the new path. The new
modules are imported only when an old name is, so nothing here costs a plain import of grader.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

# old module -> the modules its names now live in, looked up in this order
MOVED: dict[str, tuple[str, ...]] = {
    "grader.compare": ("grader.judging.compare",),
    "grader.prompts": ("grader.judging.prompts", "grader.judging.held_out"),
    "grader.scoring": ("grader.judging.scoring",),
    "grader.fixtures": ("grader.judging.fixtures",),
    "grader.results": ("grader.judging.results",),
    "grader.report_html": ("grader.judging.pictures", "grader.reports.html"),
    "grader.report_terminal": ("grader.reports.terminal",),
    "grader.session": ("grader.grading.session",),
    "grader.check_fixtures": ("grader.grading.check_fixtures",),
    "grader.sandbox.executor": ("grader.student.executor",),
}


class _OldName(types.ModuleType):
    """A module whose attributes are those of the modules the old one was split into."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name, f"moved to {', '.join(targets)}")
        self._targets = targets

    def __getattr__(self, attribute: str) -> Any:
        for target in self._targets:
            module = importlib.import_module(target)
            if hasattr(module, attribute):
                return getattr(module, attribute)
        raise AttributeError(f"{self.__name__} (now {', '.join(self._targets)}) has no {attribute!r}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        targets = MOVED[spec.name]
        warnings.warn(f"{spec.name} has moved: import from {' or '.join(targets)}", DeprecationWarning, stacklevel=2)
        return _OldName(spec.name, targets)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install() -> None:
    """Let the old names import (once per process)."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.append(_Finder())
