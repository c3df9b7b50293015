"""A Jupyter notebook as graded code: read its code cells, run them as one module.

A submitted notebook is graded like a module: its code cells run in order, at import time, where
student code runs (grader.student.executor), and the contract's functions are read from the
namespace they leave. Three rules make that fair to notebook habits:

- magics (``%matplotlib inline``, ``%%time``) and shell lines (``!pip install ...``) are IPython,
  not Python: they are skipped, with a note;
- a cell that raises is reported, and the cells after it still run (a crashing exploration cell
  must not cost the functions defined below it);
- a function the notebook does not define is "not attempted", not an error.

Reading is plain data (JSON, ast): the grader may do it in its own process to refuse bad input
early. Running is the executor's business and happens only where student code may run.
"""

from __future__ import annotations

import ast
import codecs
import itertools
import json
import linecache
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from grader.student.frames import format_syntax_error, student_frames

MAX_NOTEBOOK_BYTES = 20 * 2**20  # larger than any honest notebook (outputs included)
MAX_NOTEBOOK_DEPTH = 100  # JSON nesting: a notebook is ~6 deep, widget state and JSON outputs a few more
JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
JSON_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# A line IPython would hand to a magic or the shell: `%...`, `!...`, `x = %...`, `x = !...`, `obj?`.
IPYTHON_LINE = re.compile(r"^\s*(?:[%!]|[\w.]+\s*=\s*[%!]|[\w.]+\?\??\s*$|\?)")
NOT_DEFINED = "is not defined in"  # the message of a contract function a notebook leaves out


class NotebookError(ValueError):
    """The file is not a notebook this grader can read; the message says why, for the student."""


@dataclass(frozen=True)
class CodeCell:
    number: int  # 1-based, counting code cells only (what "code cell 3" means in a note)
    source: str  # as written
    code: str  # what runs: magics and shell lines replaced by `pass`
    skipped: tuple[str, ...] = ()  # the IPython lines left out


@dataclass
class Notebook:
    name: str
    cells: list[CodeCell] = field(default_factory=list)

    def notes(self) -> list[str]:
        """What was left out, one line per cell."""
        return [f"{self.name}, code cell {c.number}: skipped {_quote(c.skipped)} (IPython magics and "
                "shell commands do not run when the notebook is graded)" for c in self.cells if c.skipped]

    def defined_names(self) -> set[str]:
        """Names the cells bind at top level (def, class, assignment, import), read without running them."""
        names: set[str] = set()
        for cell in self.cells:
            try:
                tree = ast.parse(cell.code)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(node.name)
                elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    names.update((a.asname or a.name).split(".")[0] for a in node.names)
        return names


def _quote(lines: tuple[str, ...]) -> str:
    shown = "; ".join(line.strip() for line in lines[:3])
    return repr(shown[:120]) + (f" and {len(lines) - 3} more" if len(lines) > 3 else "")


def read_notebook(path: Path) -> Notebook:
    """The code cells of the notebook at `path`, or a NotebookError that says what is wrong.
    The size is checked before anything is read, and a FIFO or device is never read from."""
    name = path.name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise NotebookError(f"{name} cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotebookError(f"{name} is not a regular file")
        if info.st_size > MAX_NOTEBOOK_BYTES:
            raise NotebookError(_too_large(name, info.st_size))
        os.set_blocking(fd, True)
        raw = handle.read(MAX_NOTEBOOK_BYTES + 1)
    return notebook_from_bytes(raw, name)


def notebook_from_bytes(raw: bytes, name: str) -> Notebook:
    """The one way a notebook is read, here and in grade-all (grader.classroom.inputs): at most
    MAX_NOTEBOOK_BYTES, UTF-8 (a byte-order mark allowed, as Jupyter allows one), JSON
    nested at most MAX_NOTEBOOK_DEPTH deep, nbformat 4 (parse_notebook)."""
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise NotebookError(_too_large(name, len(raw)))
    try:  # by hand, not "utf-8-sig": a worker may not import a codec the template did not load
        text = raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError:
        raise NotebookError(f"{name} is not a notebook: it is not text (UTF-8 JSON)") from None
    if nests_deeper(text, MAX_NOTEBOOK_DEPTH):
        raise NotebookError(f"{name} is not a notebook: its JSON is nested more than {MAX_NOTEBOOK_DEPTH} deep")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(f"{name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                            "a notebook saved by Jupyter always is: download it again from Jupyter") from None
    except (RecursionError, MemoryError):
        raise NotebookError(f"{name} is not a notebook: its JSON is nested too deeply") from None
    return parse_notebook(data, name)


def nests_deeper(text: str, limit: int) -> bool:
    """Whether the JSON `text` nests arrays and objects more than `limit` deep, read without
    parsing it (brackets inside strings do not count): linear, no recursion, stops at the limit."""
    brackets = JSON_NOT_BRACKET.sub("", JSON_STRING.sub("", text))
    return any(depth > limit for depth in itertools.accumulate(1 if b in "[{" else -1 for b in brackets))


def _too_large(name: str, size: int) -> str:
    return (f"{name} is {size / 2**20:.0f} MiB, over the {MAX_NOTEBOOK_BYTES // 2**20} MiB limit "
            "(clear the outputs: Kernel > Restart & Clear Output, then save)")


def parse_notebook(data: Any, name: str) -> Notebook:
    if type(data) is not dict or type(data.get("cells")) is not list:
        raise NotebookError(f"{name} is not a Jupyter notebook: valid JSON, but without the notebook's "
                            "list of \"cells\"")
    major = data.get("nbformat")
    if type(major) is int and major < 4:
        raise NotebookError(f"{name} is an nbformat {major} notebook; save it with a current Jupyter (nbformat 4)")
    notebook = Notebook(name)
    for index, cell in enumerate(data["cells"], 1):
        if type(cell) is not dict:
            raise NotebookError(f"{name}: cell {index} is not a notebook cell")
        if cell.get("cell_type") != "code":
            continue
        source = _text(cell.get("source", ""))
        if source is None:
            raise NotebookError(f"{name}: cell {index}'s source is neither text nor a list of lines")
        code, skipped = strip_ipython(source)
        notebook.cells.append(CodeCell(len(notebook.cells) + 1, source, code, skipped))
    return notebook


def _text(source: Any) -> str | None:
    if type(source) is str:
        return source
    if type(source) is list and all(type(line) is str for line in source):
        return "".join(source)
    return None


def strip_ipython(source: str) -> tuple[str, tuple[str, ...]]:
    """(the cell as Python, the IPython lines left out). A cell that is Python already is left
    alone, so a string that holds a line starting with ``%`` is never touched; a ``%%`` cell magic
    skips the whole cell. Skipped lines become ``pass`` at their indentation: a block keeps a body
    and line numbers stay the notebook's."""
    if source.lstrip().startswith("%%"):
        return "", (source.strip().splitlines()[0],)
    try:
        ast.parse(source)
        return source, ()
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    lines, skipped = [], []
    for line in source.splitlines():
        if IPYTHON_LINE.match(line):
            skipped.append(line)
            lines.append(line[: len(line) - len(line.lstrip())] + "pass")
        else:
            lines.append(line)
    return "\n".join(lines), tuple(skipped)


# ---- running the cells: only where student code runs (grader.student.imports) ----


def run_notebook(path: Path, module_name: str, passthrough: tuple[type[BaseException], ...] = ()) -> tuple[ModuleType, list[str]]:
    """Run the notebook's code cells in order as module `module_name`; (the module, notes on what
    was skipped and which cells raised). A cell that raises, even with SystemExit or
    KeyboardInterrupt, is noted and the next cell runs; `passthrough` exceptions (the grader's own
    time limit) end the run."""
    notebook = read_notebook(path)
    module = ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    notes = notebook.notes()
    for cell in notebook.cells:
        filename = f"{notebook.name}, code cell {cell.number}"
        linecache.cache[filename] = (len(cell.code), None, cell.code.splitlines(keepends=True), filename)
        try:
            exec(compile(cell.code, filename, "exec", dont_inherit=True), module.__dict__)
        except BaseException as exc:  # the student's: noted, and the next cell runs
            if isinstance(exc, passthrough):
                raise
            if isinstance(exc, SyntaxError):
                error = format_syntax_error(exc)
            else:
                error = student_frames(exc)
            notes.append(f"{filename} raised, and the cells after it still ran:\n{error}")
    return module, notes


def not_defined(name: str, where: str) -> NotImplementedError:
    return NotImplementedError(f"{name} {NOT_DEFINED} {where}")
