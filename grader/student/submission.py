"""Find the code being graded: the student's stubs, the reference solutions, a submitted folder
or notebook, or the functions a notebook kernel holds; and import a trusted reference solution."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from grader.project import PROJECT_ROOT
from grader.student.imports import KERNEL_NAMESPACE, ImportFailed
from grader.student.imports import import_file as import_in_this_process
from grader.student.notebook_cells import NotebookError, read_notebook

REPO_ROOT = PROJECT_ROOT
# submission: a folder of modules (or of notebooks); notebook: one .ipynb file; namespace: the
# functions a notebook kernel holds (grader.notebooks.check.check), graded in that kernel's process.
SourceKind = Literal["exercises", "solutions", "submission", "notebook", "namespace"]


class SubmissionImportError(Exception):
    """The graded module could not be imported; the message is meant for the student."""


@dataclass(frozen=True)
class GradedSource:
    kind: SourceKind
    root: Path

    @classmethod
    def choose(cls, solutions: bool, submission: str | None, repo_root: Path = REPO_ROOT) -> GradedSource:
        if solutions and submission:
            raise ValueError("--solutions and --submission exclude each other: pick one")
        if submission:
            folder = Path(submission).expanduser().resolve()
            if folder.suffix == ".ipynb" and folder.is_file():
                try:
                    read_notebook(folder)  # bad input is refused now, in one line, not once per exercise
                except NotebookError as exc:
                    raise ValueError(f"--submission {submission}: {exc}") from None
                return cls("notebook", folder)
            if not folder.is_dir():
                raise ValueError(f"--submission {submission}: no such folder or notebook (.ipynb)")
            return cls("submission", folder)
        if solutions:
            return cls("solutions", repo_root / "solutions")
        return cls("exercises", repo_root / "exercises")

    @classmethod
    def namespace(cls) -> GradedSource:
        """The functions defined in this process's ``__main__`` (a Jupyter kernel's namespace)."""
        return cls("namespace", Path(KERNEL_NAMESPACE))

    def module_path(self, exercise: str, topic: str) -> Path:
        """exercises/ and solutions/ use NN/<topic>.py; a submission may also be flat, or hold a
        notebook instead (what an LMS stores when a student uploads one)."""
        if self.kind in ("notebook", "namespace"):
            return self.root  # one notebook holds every exercise's functions
        nested = self.root / exercise / f"{topic}.py"
        if self.kind != "submission" or nested.exists():
            return nested
        for candidate in (self.root / f"{topic}.py", self.root / "exercises" / exercise / f"{topic}.py"):
            if candidate.exists():
                return candidate
        return notebook_for(self.root, exercise) or nested

    def describe(self) -> str:
        if self.kind == "namespace":
            return "the functions defined in this notebook"
        return self.kind if self.kind not in ("submission", "notebook") else str(self.root)


def notebook_for(folder: Path, exercise: str) -> Path | None:
    """The notebook in `folder` that holds `exercise`: the one named ``NN_*.ipynb`` (as the course's
    notebooks are), else the folder's only notebook; None when there is none or no way to choose."""
    notebooks = sorted(p for p in folder.glob("*.ipynb") if p.is_file())
    named = [p for p in notebooks if p.stem == exercise or p.stem.startswith(f"{exercise}_")]
    if named:
        return named[0]
    return notebooks[0] if len(notebooks) == 1 else None


def import_file(path: Path, module_name: str) -> ModuleType:
    """Import one trusted file (a reference solution) as `module_name`, fresh; errors become
    SubmissionImportError. Student modules are imported by grader.student.executor instead."""
    try:
        return import_in_this_process(path, module_name)
    except ImportFailed as exc:
        raise SubmissionImportError(str(exc)) from None
