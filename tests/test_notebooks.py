"""Notebooks: the students' notebooks, check() from a kernel, and notebook submissions.

- notebooks/NN_<topic>.ipynb are made from the exercise folders (README.md, the stub) by
  `mechgrade notebooks build`; the committed ones are in sync (rebuilt in memory and compared).
- A notebook's last cell, `check("NN")`, grades the functions defined in the kernel: executed
  headless (nbclient, an ipykernel) for exercise 03 only, once as committed (every check "not
  attempted") and once with the reference solutions in its cells (full marks, then again after a
  function is deleted). The other exercises' notebooks are built by the same code, which the sync
  and structure tests cover.
- `mechgrade grade --submission work.ipynb` (or a folder holding it, as an LMS stores an upload)
  runs the notebook's code cells where student code runs: magics and shell lines are skipped with
  a note, a cell that raises is noted and the next cells still run, a function the notebook does
  not define is "not attempted"; in a worker with --isolate (never the grader's process), where a
  cell that exits the process or loops forever costs that exercise and nothing else.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pristine import exercises_tree

from grader.student.notebook_cells import NotebookError, read_notebook, strip_ipython
from grader.notebooks.build import (
    build,
    build_notebook,
    exercise_folders,
    exercise_stub,
    notebook_name,
    render,
    stale_notebooks,
)
from grader.student.submission import GradedSource

REPO = Path(__file__).resolve().parent.parent
MODEL = "toy-gpt2"
RUN_TIMEOUT = 300
ENV = {"HF_HUB_OFFLINE": "1", "MECHGRADE_MODEL": MODEL, "OMP_NUM_THREADS": "1"}
ATTENTION_FUNCTIONS = ["attention_pattern", "plot_attention", "token_index", "heads_attending_to", "content_heads"]


_cell_ids = itertools.count()


def code_cell(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "id": f"test-{next(_cell_ids)}", "metadata": {},
            "outputs": [], "source": source}


def solutions_notebook(exercise: str) -> dict[str, Any]:
    """The exercise's notebook with the reference solutions in its cells: what a student who
    finished it has."""
    folder = REPO / "exercises" / exercise
    solution = REPO / "solutions" / exercise / exercise_stub(folder).name
    return build_notebook(exercise, (folder / "README.md").read_text(), solution.read_text())


def without_function(notebook: dict[str, Any], name: str) -> dict[str, Any]:
    cells = [c for c in notebook["cells"] if not "".join(c["source"]).startswith(f"def {name}(")]
    return {**notebook, "cells": cells}


# ---- building the notebooks ----


@pytest.fixture(scope="module")
def committed_exercises(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """exercises/ as git HEAD holds it: a student's work in the checkout changes nothing here."""
    return exercises_tree(tmp_path_factory.mktemp("pristine"))


def test_the_committed_notebooks_are_in_sync_with_the_exercise_folders(committed_exercises: Path) -> None:
    assert stale_notebooks(committed_exercises) == [], "run `mechgrade notebooks build` and commit notebooks/"


@pytest.mark.parametrize("name", [p.name for p in exercise_folders()])
def test_a_notebook_is_the_readme_then_a_setup_cell_then_the_stubs_functions_then_check(
    name: str, committed_exercises: Path
) -> None:
    folder = committed_exercises / name
    notebook = json.loads((REPO / "notebooks" / notebook_name(folder)).read_text())
    cells = [(c["cell_type"], "".join(c["source"])) for c in notebook["cells"]]
    assert cells[0] == ("markdown", (folder / "README.md").read_text().strip())
    setup = cells[2][1]
    assert "model = course_model()" in setup and "__future__" not in setup
    stub = exercise_stub(folder).read_text()
    definitions = [ast.get_source_segment(stub, node) for node in ast.parse(stub).body
                   if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    code = [text for kind, text in cells[3:-1]]
    assert [text for text in code if text.startswith(("def ", "class ", "@"))] == definitions  # as in the stub
    assert cells[-1][0] == "code" and f'check("{name}")' in cells[-1][1]


def test_build_writes_every_notebook_and_removes_those_no_exercise_makes(tmp_path: Path) -> None:
    exercises, notebooks = tmp_path / "exercises", tmp_path / "notebooks"
    shutil.copytree(REPO / "exercises" / "03", exercises / "03")
    notebooks.mkdir()
    (notebooks / "99_gone.ipynb").write_text("{}")
    assert build(exercises, notebooks) == ["03_attention.ipynb", "99_gone.ipynb (removed)"]
    assert stale_notebooks(exercises, notebooks) == []
    readme = exercises / "03" / "README.md"
    readme.write_text(readme.read_text() + "\nOne more line.\n")
    assert stale_notebooks(exercises, notebooks) == ["03_attention.ipynb"]


# ---- reading a notebook's cells ----


def test_magics_and_shell_lines_become_pass_and_python_is_left_alone() -> None:
    code, skipped = strip_ipython("%matplotlib inline\nimport os\nfor i in range(2):\n    !echo hi\nfiles = !ls\nx = 1")
    assert code == "pass\nimport os\nfor i in range(2):\n    pass\npass\nx = 1"
    assert skipped == ("%matplotlib inline", "    !echo hi", "files = !ls")
    assert strip_ipython('text = """\n%d apples\n"""') == ('text = """\n%d apples\n"""', ())
    assert strip_ipython("%%time\nx = 1") == ("", ("%%time",))


@pytest.mark.parametrize("content, says", [
    ("{not json", "is not valid JSON (line 1, column 2"),
    ('{"cells": 3}', "is not a Jupyter notebook"),
    ('{"cells": [], "nbformat": 3}', "nbformat 3 notebook"),
    ('{"cells": [{"cell_type": "code", "source": 7}]}', "cell 1's source is neither text nor a list of lines"),
])
def test_a_file_that_is_not_a_notebook_is_refused_with_a_clear_message(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "work.ipynb"
    path.write_text(content)
    with pytest.raises(NotebookError, match=re.escape(says)):
        read_notebook(path)
    with pytest.raises(ValueError, match=rf"--submission .*work\.ipynb: work\.ipynb.*{re.escape(says)}"):
        GradedSource.choose(False, str(path))


def test_a_submitted_folder_may_hold_the_notebook_instead_of_modules(tmp_path: Path) -> None:
    (tmp_path / "work.ipynb").write_text(render(solutions_notebook("03")))
    source = GradedSource.choose(False, str(tmp_path))
    assert source.module_path("03", "attention") == tmp_path / "work.ipynb"
    (tmp_path / "04_patching.ipynb").write_text(render(solutions_notebook("04")))
    assert source.module_path("04", "patching") == tmp_path / "04_patching.ipynb"  # named for its exercise
    assert source.module_path("03", "attention") == tmp_path / "03" / "attention.py"  # two others: no guess


# ---- check() in a kernel ----


def execute(notebook: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Run the notebook in a fresh ipykernel from notebooks/; its cells with their outputs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for name, value in {**ENV, "PYTHONPATH": str(REPO)}.items():
        monkeypatch.setenv(name, value)
    node = nbformat.reads(json.dumps(notebook), as_version=4)
    client = nbclient.NotebookClient(node, timeout=RUN_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO / "notebooks")}})
    client.execute()
    return node["cells"]


RESULT_CELL = '''
import json
import grader.notebooks.check
import grader.student.runtime
run = grader.notebooks.check.last_run
print("RESULT", json.dumps({"points": run.points, "max": run.max_points, "models_loaded": len(grader.student.runtime._loaded),
      "status": {t.name: t.status for e in run.exercises for t in e.tests}}))
'''


def result_of(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    texts = [o.get("text", "") for c in cells for o in c.get("outputs", []) if o.get("output_type") == "stream"]
    return [json.loads(line.removeprefix("RESULT ")) for text in texts for line in text.splitlines() if line.startswith("RESULT ")]


def test_the_committed_notebook_run_as_it_is_scores_zero_every_function_not_attempted(monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = json.loads((REPO / "notebooks" / "03_attention.ipynb").read_text())
    notebook["cells"].append(code_cell(RESULT_CELL))
    cells = execute(notebook, monkeypatch)
    [result] = result_of(cells)
    assert result["points"] == 0 and result["max"] > 0
    assert set(result["status"].values()) == {"not_attempted"}
    shown = cells[-2]["outputs"]  # the check cell: the score table, then the report inline
    assert "not attempted" in "".join(o.get("text", "") for o in shown)
    assert any("<iframe srcdoc=" in o.get("data", {}).get("text/html", "") for o in shown)


def test_the_notebook_with_the_solutions_scores_full_marks_and_a_second_check_reuses_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = solutions_notebook("03")
    notebook["cells"] += [code_cell(RESULT_CELL), code_cell('del plot_attention\ncheck("03")'), code_cell(RESULT_CELL)]
    first, second = result_of(execute(notebook, monkeypatch))
    assert first["points"] == first["max"] > 0 and set(first["status"].values()) == {"passed"}
    plotting = {name for name in second["status"] if "plot_attention" in name}
    assert plotting and {second["status"][name] for name in plotting} == {"not_attempted"}
    assert {s for name, s in second["status"].items() if name not in plotting} == {"passed"}
    assert first["models_loaded"] == second["models_loaded"] == 1  # the setup cell's model, loaded once


# ---- notebook submissions ----


PID_CELL = 'import os\nraise RuntimeError(f"this cell ran in a process whose parent is {os.getppid()}")'


def submitted_notebook(*extra_cells: str) -> dict[str, Any]:
    """Exercise 03 solved, with notebook habits around it, and nothing of exercise 04."""
    notebook = solutions_notebook("03")
    habits = [code_cell("%matplotlib inline\n!pip install nothing"), code_cell("%%bash\necho hi"), code_cell(PID_CELL)]
    notebook["cells"][3:3] = habits + [code_cell(c) for c in extra_cells]
    return notebook


@dataclass
class Graded:
    document: dict[str, Any]
    grader_pid: int  # the `mechgrade grade` process: the parent of pytest, which grades
    log: str

    def statuses(self, exercise: str) -> list[str]:
        number = exercise.lstrip("0")
        return [t["output"].split(":")[0] for t in self.document["tests"] if t["number"].split(".")[0] == number]

    def points(self, exercise: str) -> tuple[float, float]:
        number = exercise.lstrip("0")
        tests = [t for t in self.document["tests"] if t["number"].split(".")[0] == number]
        return sum(t["score"] for t in tests), sum(t["max_score"] for t in tests)


def grade_notebook(notebook: dict[str, Any], out: Path, *options: str, as_folder: bool = False) -> Graded:
    out.mkdir(parents=True)
    submission = out / "submission"
    submission.mkdir()
    (submission / "work.ipynb").write_text(render(notebook))
    results = out / "results" / "results.json"
    command = [sys.executable, "-m", "grader", "grade", "--model", MODEL, "--exercise", "03", "--exercise", "04",
               "--submission", str(submission if as_folder else submission / "work.ipynb"),
               "--gradescope-json", str(results), "--report-html", "", *options]
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **ENV}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    log, _ = process.communicate(timeout=RUN_TIMEOUT)
    assert results.is_file(), log[-4000:]
    return Graded(json.loads(results.read_text()), process.pid, log)


RUNS: dict[str, Callable[[Path], Graded]] = {
    "in-process": lambda out: grade_notebook(submitted_notebook(), out, as_folder=True),
    "isolated": lambda out: grade_notebook(submitted_notebook(), out, "--isolate"),
    # A folder holding the notebook, graded isolated: what the autograder bundle's run_autograder does.
    "exits": lambda out: grade_notebook(submitted_notebook("import os\nos._exit(3)"), out, "--isolate", as_folder=True),
    "loops": lambda out: grade_notebook(submitted_notebook("while True:\n    pass"), out, "--isolate", "--check-timeout", "5"),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Graded]:
    if not sys.platform.startswith("linux"):
        pytest.skip("--isolate needs Linux")
    root = tmp_path_factory.mktemp("notebook-submissions")
    with ThreadPoolExecutor(max_workers=2) as pool:  # two runs at a time, one torch thread each
        return dict(zip(RUNS, pool.map(lambda name: RUNS[name](root / name), RUNS)))


@pytest.mark.parametrize("mode", ["in-process", "isolated"])
def test_a_notebook_is_graded_from_the_namespace_its_cells_leave(graded: dict[str, Graded], mode: str) -> None:
    run = graded[mode]
    got, most = run.points("03")
    assert got == most > 0, run.log[-4000:]
    assert set(run.statuses("04")) == {"not attempted"}
    assert all("is not defined in work.ipynb" in t["output"]
               for t in run.document["tests"] if t["number"].startswith("4."))


@pytest.mark.parametrize("mode", ["in-process", "isolated"])
def test_magics_are_skipped_and_a_cell_that_raises_is_noted_while_the_rest_still_run(graded: dict[str, Graded], mode: str) -> None:
    output = graded[mode].document["output"]
    assert "code cell 2: skipped '%matplotlib inline; !pip install nothing'" in output
    assert "code cell 3: skipped '%%bash'" in output
    assert "work.ipynb, code cell 4 raised, and the cells after it still ran" in output
    assert "RuntimeError: this cell ran in a process whose parent is" in output


def test_cells_run_in_the_grading_process_locally_and_never_in_it_when_isolated(graded: dict[str, Graded]) -> None:
    def parent_of_cell(run: Graded) -> int:
        return int(re.search(r"whose parent is (\d+)", run.document["output"]).group(1))  # type: ignore[union-attr]

    local = graded["in-process"]
    assert parent_of_cell(local) == local.grader_pid  # pytest, a child of `mechgrade grade`, ran it
    isolated = graded["isolated"]
    assert parent_of_cell(isolated) != isolated.grader_pid  # a worker, a child of the template


def test_a_cell_that_exits_the_worker_costs_only_the_exercises_it_is_imported_for(graded: dict[str, Graded]) -> None:
    run = graded["exits"]
    assert run.document["score"] == 0
    for exercise in ("03", "04"):
        outputs = [t["output"] for t in run.document["tests"] if t["number"].startswith(f"{int(exercise)}.")]
        assert outputs and all("ended the worker process during importing" in o and "status 3" in o for o in outputs), outputs


def test_a_cell_that_loops_forever_times_out_at_the_check_limit(graded: dict[str, Graded]) -> None:
    run = graded["loops"]
    assert run.document["score"] == 0
    assert set(run.statuses("03")) == set(run.statuses("04")) == {"timed out"}, run.log[-3000:]
    assert all("timed out after 5 s" in t["output"] for t in run.document["tests"])
