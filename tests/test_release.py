"""`mechgrade release`: the students' copy of the course holds no answers and no hidden check, and
grades what it holds (public checks) while saying what only the autograder grades.

One release of this checkout's HEAD is built per module (the drift check is the bundle's, tested
there); grading runs are few: exercise 03 for the stubs and for a copy of its solutions, and
exercise 07's training check alone for a submission that returns the shipped SAE.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from grader.course.hidden_checks import cut_hidden_checks
from grader.course.release import MANIFEST, ReleaseError, build_release
from grader.judging import held_out
from grader.judging.fixtures import HIDDEN_SUFFIX
from grader.judging.prompts import IOI_NAMES, IOI_TEMPLATE

REPO = Path(__file__).resolve().parent.parent
HIDDEN_MARKER = "@pytest.mark.hidden"


def _head_has_release_inputs() -> bool:
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "exercises", "solutions"], capture_output=True, text=True)
    return listed.returncode == 0 and "solutions/03/attention.py" in listed.stdout


pytestmark = pytest.mark.skipif(not _head_has_release_inputs(), reason="needs this repository's git checkout")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release") / "course"
    return build_release(out, check_drift=False)


def _release_files(release: Path) -> list[Path]:
    return sorted(p for p in release.rglob("*") if p.is_file())


def _code_units(release: Path) -> list[tuple[str, str]]:
    """(where, source) of every .py file and notebook code cell of the release."""
    units = []
    for path in _release_files(release):
        if path.suffix == ".py":
            units.append((str(path), path.read_text()))
        elif path.suffix == ".ipynb":
            for n, cell in enumerate(json.loads(path.read_text())["cells"]):
                if cell["cell_type"] == "code":
                    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
                    units.append((f"{path} cell {n}", source))
    return units


def _function_bodies(source: str) -> list[tuple[str, str]]:
    """(name, dump of the body) of every function and method; a notebook cell may hold magics."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    return [(node.name, ast.dump(ast.Module(body=node.body, type_ignores=[])))
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_a_release_holds_no_reference_solution_body(release: Path) -> None:
    solution_bodies = {body: f"{path.relative_to(REPO)}:{name}" for path in (REPO / "solutions").rglob("*.py")
                       for name, body in _function_bodies(path.read_text())}
    assert len(solution_bodies) > 30  # every graded function and method of the seven exercises
    found = [(where, solution_bodies[body]) for where, source in _code_units(release)
             for _, body in _function_bodies(source) if body in solution_bodies]
    assert found == []


def test_a_release_leaves_out_solutions_hidden_checks_tests_history_and_benchmarks(release: Path) -> None:
    names = {p.relative_to(release).as_posix() for p in _release_files(release)}
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {".gitignore", MANIFEST, "README.md", "pyproject.toml", "grader", "exercises", "fixtures", "notebooks"}
    assert not any(name.endswith(HIDDEN_SUFFIX) for name in names)
    assert "grader/judging/held_out.py" not in names and "grader/course/hidden_inputs.py" not in names
    assert {f"exercises/{e}/test_{e}_{t}.py" for e, t in (("03", "attention"), ("07", "sae"))} <= names
    assert "fixtures/models/toy-gpt2-sae/sae.safetensors" in names and "notebooks/03_attention.ipynb" in names


def test_a_release_holds_no_hidden_check_name_input_or_value(release: Path) -> None:
    hidden_names = [node.name for path in (REPO / "exercises").glob("*/test_*.py")
                    for node in ast.parse(path.read_text()).body
                    if isinstance(node, ast.FunctionDef) and "pytest.mark.hidden" in {ast.unparse(d) for d in node.decorator_list}]
    assert len(hidden_names) >= 10
    inputs = [held_out.DEFAULT.prompt, held_out.DEFAULT.clean, held_out.DEFAULT.adjacent, held_out.DEFAULT.apart,
              held_out.DEFAULT.ioi_prompt, held_out.DEFAULT.ioi_template]
    # The stored values only hidden checks have, as the JSON files spell numbers (a pattern row of
    # "The capital of", shared by a public and a hidden prompt, is the same in both).
    fixtures = REPO / "fixtures" / "toy-gpt2"
    public_values = {json.dumps(v) for path in fixtures.glob("[0-9][0-9].json")
                     for entry in json.loads(path.read_text())["checks"].values() for v in _numbers(entry["value"])}
    hidden_values = {json.dumps(v) for path in fixtures.glob(f"*{HIDDEN_SUFFIX}")
                     for entry in json.loads(path.read_text())["checks"].values() for v in _numbers(entry["value"])
                     if isinstance(v, float) and abs(v) > 1e-3} - public_values
    assert len(hidden_values) > 100
    text = "\n".join(p.read_text(errors="replace") for p in _release_files(release)
                     if p.suffix in {".py", ".json", ".md", ".ipynb", ".toml", ".j2"} and "models" not in p.parts)
    assert [n for n in hidden_names if n in text] == []
    assert [i for i in inputs if i in text] == []
    assert [v for v in hidden_values if v in text] == []


def test_exercise_08_ships_the_inputs_its_text_states_and_none_of_its_held_out_names(release: Path) -> None:
    """Its public checks run on the template and names the exercise text states; the held-out
    template and names are in none of its files (check file, stub, text, notebook)."""
    text = (release / "exercises" / "08" / "README.md").read_text()
    assert IOI_TEMPLATE in text and [n for n in IOI_NAMES if n not in text] == []
    shipped = "\n".join(p.read_text() for p in [*sorted((release / "exercises" / "08").iterdir()),
                                                 release / "notebooks" / "08_ioi.ipynb"])
    words = set(re.findall(r"[A-Za-z]+", shipped))
    assert not set(held_out.DEFAULT.ioi_names) & set(IOI_NAMES)
    assert [n for n in held_out.DEFAULT.ioi_names if n in words] == []
    assert held_out.DEFAULT.ioi_template not in shipped and HIDDEN_MARKER not in shipped
    assert json.loads((release / MANIFEST).read_text())["checks"]["08"]["hidden_checks"] > 0


def _numbers(value: object) -> list[object]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value]


def test_the_same_commit_and_options_give_byte_identical_releases(release: Path, tmp_path: Path) -> None:
    again = build_release(tmp_path / "again", check_drift=False)
    files = {p.relative_to(release): p.read_bytes() for p in _release_files(release)}
    assert files == {p.relative_to(again): p.read_bytes() for p in _release_files(again)}


def test_an_unknown_exercise_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "course"
    with pytest.raises(ReleaseError) as raised:
        build_release(out, exercises=["03", "42"], check_drift=False)
    assert "42" in str(raised.value) and "\n" not in str(raised.value)
    assert not out.exists()


def test_a_model_without_fixtures_is_refused_with_the_command_that_makes_them(tmp_path: Path) -> None:
    if (REPO / "fixtures" / "gpt2-small" / "03.json").exists():
        pytest.skip("this checkout has GPT-2 small's fixtures")
    with pytest.raises(ReleaseError) as raised:
        build_release(tmp_path / "course", exercises=["03"], models=["gpt2-small"], check_drift=False)
    assert "mechgrade fixtures refresh --model gpt2-small" in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "course").exists()


def test_cutting_hidden_checks_counts_cases_and_points_and_drops_their_helpers() -> None:
    source = '''"""An exercise"""
import pytest

TOPIC = "thing"
CASES = ["a", "b", "c"]


def _only_hidden(x):
    return x


@pytest.mark.points(2)
def test_public(student):
    pass


@pytest.mark.hidden
@pytest.mark.points(3)
@pytest.mark.parametrize("case", CASES)
def test_secret(case, held_out):
    _only_hidden(held_out.prompt)
'''
    cut = cut_hidden_checks(source)
    assert (cut.hidden_checks, cut.hidden_points, cut.public) == (3, 9.0, {"test_public": 2.0})
    assert "test_secret" not in cut.text and "_only_hidden" not in cut.text and "CASES" not in cut.text
    namespace: dict[str, object] = {}
    exec(compile(cut.text, "cut", "exec"), namespace)
    assert namespace["HIDDEN_CHECKS"] == {"checks": 3, "points": 9}


# ---- grading inside the release, as its README says ----


def _venv_in(course: Path) -> Path:
    """`python3 -m venv .venv && pip install -e .` inside the release, without a download: this
    environment's packages (torch, pytest...) are seen through a .pth file, after the venv's own."""
    venv = course / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-build-isolation",
                    "-q", "-e", str(course)], check=True, capture_output=True)
    return venv


def _grade(course: Path, submission: Path | None, out: Path, *extra: str) -> tuple[str, dict]:
    """The README's `mechgrade grade`, run in the release with its own venv's mechgrade."""
    results = out / "results.json"
    command = [str(course / ".venv" / "bin" / "mechgrade"), "grade", "--model", "toy-gpt2",
               "--report-html", str(out / "report.html"), "--gradescope-json", str(results), *extra]
    if submission is not None:
        command += ["--submission", str(submission)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(command, cwd=course, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=900)
    return done.stdout + done.stderr, json.loads(results.read_text())


def test_in_a_release_stubs_score_0_and_the_solutions_every_public_point_in_grade_and_check(release: Path, tmp_path: Path) -> None:
    course = shutil.copytree(release, tmp_path / "course")
    _venv_in(course)
    imported = subprocess.run([str(course / ".venv" / "bin" / "python"), "-c", "import grader; print(grader.__file__)"],
                              capture_output=True, text=True, cwd=tmp_path)
    assert imported.stdout.startswith(str(course)), imported.stdout + imported.stderr  # the release's grader
    stubs_text, stubs = _grade(course, None, tmp_path, "--exercise", "03")
    assert stubs["score"] == 0 and "not attempted" in stubs_text
    submission = tmp_path / "submission" / "03"
    shutil.copytree(REPO / "solutions" / "03", submission)
    (tmp_path / "solved").mkdir()
    text, results = _grade(course, submission.parent, tmp_path / "solved", "--exercise", "03")
    public = json.loads((release / MANIFEST).read_text())["checks"]["03"]
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) > 0
    assert all(t["visibility"] == "visible" for t in results["tests"])
    points = f"{public['hidden_points']:g}"
    text = " ".join(text.split())  # the table wraps at the terminal's width
    assert f"{public['hidden_checks']} hidden checks ({points} points) are graded only on the autograder" in text
    assert "public passed" in text and "public checks" in text
    assert "are graded only on the autograder" in (tmp_path / "solved" / "report.html").read_text()
    notebook_points, notebook_table = _check_in_the_release_notebook(course, submission / "attention.py", tmp_path)
    assert notebook_points == results["score"]  # check("03") in the notebook agrees with mechgrade grade
    assert f"{public['hidden_checks']} hidden checks ({points} points) are graded only on the autograder" in notebook_table


def _check_in_the_release_notebook(course: Path, solution: Path, tmp_path: Path) -> tuple[float, str]:
    """The release's notebook 03 as a student who finished it runs it: its code cells, the stub
    cells replaced by the solution, in the release's venv; check("03") last. (A script, not a
    kernel: the kernel a test can start runs the test environment's Python, not the release's.)"""
    notebook = json.loads((course / "notebooks" / "03_attention.ipynb").read_text())
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    setup, check_cell = cells[0], cells[-1]
    assert 'check("03")' in check_cell and "course_model()" in setup
    run = [setup, solution.read_text(), check_cell.replace('check("03")', 'check("03", show_report=False)'),
           "import grader.notebooks.check\nprint('POINTS', grader.notebooks.check.last_run.points)"]
    script = f"for cell in {run!r}:\n    exec(compile(cell, 'cell', 'exec'), globals())"  # cell by cell, as a kernel
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(course / ".venv" / "bin" / "python"), "-c", script], cwd=course / "notebooks",
                          env={**env, "HF_HUB_OFFLINE": "1", "MECHGRADE_MODEL": "toy-gpt2", "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    [points] = [float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("POINTS ")]
    return points, " ".join(done.stdout.split())


# ---- what the reports say about hidden checks ----


def _run_with(hidden_test: bool, left_out: int) -> Any:
    from grader.judging.results import ExerciseResult, RunResult, TestResult

    tests = [TestResult("a", "03", "test_a", "public one", 4.0, points=4.0, status="passed"),
             TestResult("b", "03", "test_b", "hidden one", 2.0, points=0.0, status="failed", hidden=hidden_test)]
    exercise = ExerciseResult("03", "What the model attends to", "exercises/03/attention.py", tests[: 1 + hidden_test],
                              hidden_checks=left_out, hidden_points=6.0 if left_out else 0.0)
    return RunResult("toy-gpt2", "--model", "cpu", "exercises", exercises=[exercise])


def test_gradescope_shows_hidden_checks_after_publishing_and_public_ones_at_once() -> None:
    from grader.reports.gradescope import gradescope_results

    entries = gradescope_results(_run_with(hidden_test=True, left_out=0))["tests"]
    assert [e["visibility"] for e in entries] == ["visible", "after_published"]


def test_a_release_never_reads_passed_while_hidden_points_remain() -> None:
    from grader.reports.html import render_html
    from grader.reports.terminal import render_terminal

    run = _run_with(hidden_test=False, left_out=3)
    table = render_terminal(run, None, 100)
    line = "public checks 4/4; 3 hidden checks (6 points) are graded only on the autograder"
    assert line in table and "public passed" in table
    assert " passed" not in table.replace("public passed", "")
    assert line in render_html(run)
    plain = render_terminal(_run_with(hidden_test=False, left_out=0), None, 100)
    assert "hidden" not in plain and "passed" in plain
