"""The students' notebooks, made from the exercise folders so that the two never disagree.

    python -m grader.notebooks.build build     (or: mechgrade notebooks build)   write notebooks/NN_<topic>.ipynb
    python -m grader.notebooks.build check                                        exit 1 if one is out of date

A notebook is the exercise's README.md (markdown), a setup cell (the stub's imports and the
course's model, loaded once per kernel), one code cell per top-level definition of the stub,
exactly as the stub has it (docstring, hint, ``raise NotImplementedError``), and a last cell
that grades the functions defined in the notebook: ``check("NN")``.

The output is a pure function of the sources (no outputs, no execution counts, cell ids from the
cell's position), so tests/test_notebooks.py can rebuild every notebook in memory and compare.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

from grader.project import EXERCISES_DIR, PROJECT_ROOT

REPO_ROOT = PROJECT_ROOT
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

HOW_TO = """\
**How to work in this notebook.** Run the setup cell once: it loads the course's model (GPT-2 \
small, or the practice model `toy-gpt2` where GPT-2 small is out of reach) as `model`. Write each \
function in its cell, in place of `raise NotImplementedError`, and try it on `model` in cells of \
your own. The last cell grades every function this notebook defines, on the model already loaded: \
run it as often as you like; a function you have not written yet is "not attempted"."""

SETUP_COMMENT = "# Setup: the exercise's imports, and the course's model, loaded once per kernel."
MODEL_LINES = (
    "from grader import course_model",
    "",
    "model = course_model()  # GPT-2 small, or the practice model when GPT-2 small is out of reach",
)


def exercise_stub(folder: Path) -> Path:
    """The stub module of an exercise folder: the module its check file's TOPIC names."""
    checks = sorted(folder.glob(f"test_{folder.name}_*.py"))
    if len(checks) != 1:
        raise ValueError(f"{folder}: expected one test_{folder.name}_<topic>.py, found {len(checks)}")
    topic = checks[0].stem.removeprefix(f"test_{folder.name}_")
    return folder / f"{topic}.py"


def exercise_folders(root: Path = EXERCISES_DIR) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit() and len(p.name) == 2)


def notebook_name(folder: Path) -> str:
    return f"{folder.name}_{exercise_stub(folder).stem}.ipynb"


def build_notebook(exercise: str, readme: str, module_source: str) -> dict[str, Any]:
    """The notebook (nbformat 4 JSON data) for one exercise: its README, its module's imports in a
    setup cell, each of its other top-level statements in a cell of its own, then the grading cell.
    `module_source` is the stub (or, in tests, the reference solution: a filled-in notebook)."""
    tree = ast.parse(module_source)
    imports: list[str] = []
    cells = [_markdown(readme.strip()), _markdown(HOW_TO)]
    body: list[str] = []
    for node in tree.body:
        segment = ast.get_source_segment(module_source, node, padded=False) or ""
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # the module docstring: the README says it, at more length
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue  # a notebook evaluates annotations as it goes; the course's Python (3.10+) can
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(segment)
            continue
        body.append(_with_decorators(module_source, node, segment))
    cells.append(_code("\n".join([SETUP_COMMENT, *imports, *MODEL_LINES])))
    cells.extend(_code(text) for text in body)
    cells.append(_code(f'from grader import check\n\ncheck("{exercise}")  # grade the functions above: run it as often as you like'))
    for number, cell in enumerate(cells):
        cell["id"] = f"ex{exercise}-{number:02d}"
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _with_decorators(source: str, node: ast.stmt, segment: str) -> str:
    decorators = getattr(node, "decorator_list", [])
    if not decorators:
        return segment
    lines = source.splitlines()
    return "\n".join(lines[decorators[0].lineno - 1 : node.end_lineno])


def _markdown(text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": _lines(text)}


def _code(text: str) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": _lines(text)}


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def render(notebook: dict[str, Any]) -> str:
    """The file's text, as Jupyter writes it (one-space indent, sorted keys), ending in a newline."""
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def expected_notebooks(exercises: Path = EXERCISES_DIR) -> dict[str, str]:
    """File name -> text of every notebook, as the exercise folders make them now."""
    out = {}
    for folder in exercise_folders(exercises):
        stub = exercise_stub(folder)
        readme = (folder / "README.md").read_text(encoding="utf-8")
        notebook = build_notebook(folder.name, readme, stub.read_text(encoding="utf-8"))
        out[notebook_name(folder)] = render(notebook)
    return out


def stale_notebooks(exercises: Path = EXERCISES_DIR, notebooks: Path = NOTEBOOKS_DIR) -> list[str]:
    """What `build` would change: notebooks missing, different, or with no exercise any more."""
    want = expected_notebooks(exercises)
    have = {p.name for p in notebooks.glob("*.ipynb")} if notebooks.is_dir() else set()
    changed = [name for name, text in want.items()
               if not (notebooks / name).is_file() or (notebooks / name).read_text(encoding="utf-8") != text]
    return sorted(changed + [f"{name} (no exercise makes it)" for name in have - set(want)])


def build(exercises: Path = EXERCISES_DIR, notebooks: Path = NOTEBOOKS_DIR) -> list[str]:
    """Write every notebook that changed, remove those no exercise makes; what was written."""
    notebooks.mkdir(parents=True, exist_ok=True)
    want = expected_notebooks(exercises)
    written = []
    for name, text in want.items():
        path = notebooks / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(name)
    for path in notebooks.glob("*.ipynb"):
        if path.name not in want:
            path.unlink()
            written.append(f"{path.name} (removed)")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mechgrade notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["build", "check"])
    args = parser.parse_args(argv)
    if args.action == "build":
        written = build()
        print("\n".join(f"wrote notebooks/{name}" for name in written) or "notebooks/ is up to date")
        return 0
    stale = stale_notebooks()
    if stale:
        print("out of date (run `mechgrade notebooks build`): " + ", ".join(stale), file=sys.stderr)
        return 1
    print("notebooks/ is in sync with exercises/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
