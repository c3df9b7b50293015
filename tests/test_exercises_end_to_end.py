"""The shipped exercises, end to end: the reference solutions score 100%, the untouched stubs score
0 as "not attempted", stored expected values agree with the solutions, and the stubs and solutions
keep the student-facing contract of exercises/CONTRACT.md (names, signatures, docstrings, hints).

The grading runs go through the ``mechgrade`` command (``python -m grader``), in a child process,
on the practice model, as a course's autograder would run them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pristine import stub_source, write_stubs

REPO = Path(__file__).resolve().parent.parent
MODEL = "toy-gpt2"
CONTRACT = REPO / "exercises" / "CONTRACT.md"
TOPICS = {"01": "load_model", "02": "cache", "03": "attention", "04": "patching", "05": "residual",
          "06": "induction", "07": "sae", "08": "ioi"}


def _contract_signatures(text: str) -> dict[str, list[str]]:
    """exercise -> every `def ...` signature in the python blocks of its "## NN" section, one line
    each; a method of a `class C` block (indented by four spaces) as `def C.method(...)`."""
    found: dict[str, list[str]] = {}
    for exercise, section in re.findall(r"^## (\d\d)\b(.*?)(?=^## |\Z)", text, flags=re.S | re.M):
        for block in re.findall(r"```python\n(.*?)```", section, flags=re.S):
            lines = block.splitlines()
            owner = ""
            for index, line in enumerate(lines):
                if line.startswith("class "):
                    owner = re.split(r"[(:]", line.removeprefix("class "))[0].strip() + "."
                elif line.startswith("def "):
                    owner = ""
                if line.startswith("def ") or (owner and line.startswith("    def ")):
                    signature = "def " + owner + line.strip().removeprefix("def ")
                    while signature.count("(") > signature.count(")"):
                        index += 1
                        signature += " " + lines[index].strip()
                    found.setdefault(exercise, []).append(re.sub(r"\s+", " ", signature.split("  #")[0]).strip())
    return found


CONTRACT_SIGNATURES = _contract_signatures(CONTRACT.read_text())


def _signatures(exercise: str) -> list[str]:
    return CONTRACT_SIGNATURES[exercise]


def mechgrade(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="mechgrade-child-") as basetemp:
        return _run_mechgrade(args, basetemp, timeout)


def _run_mechgrade(args: tuple[str, ...], basetemp: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MECHGRADE_MODEL": MODEL,
           "OMP_NUM_THREADS": "1",  # a tiny model: one thread is fastest, and never fights a busy CPU
           # A temp root of its own: a child pytest prunes old numbered temp dirs, this run's among them.
           "PYTEST_ADDOPTS": f"--basetemp={basetemp}"}
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _log(completed: subprocess.CompletedProcess[str]) -> str:
    return f"exit status {completed.returncode}\n{completed.stdout[-5000:]}\n{completed.stderr[-3000:]}"


def _graded(out: Path, *args: str) -> tuple[dict[str, Any], Path, str]:
    results = out / "results.json"
    completed = mechgrade("grade", "--model", MODEL, "--gradescope-json", str(results), *args,
                          "--report-html", str(out / "report.html") if "--solutions" in args else "")
    assert results.is_file(), _log(completed)
    return json.loads(results.read_text()), out, _log(completed)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[tuple[dict[str, Any], Path, str]]]]:
    """The two grading runs, side by side (each is mostly start-up and model loading)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {
            "solutions": pool.submit(_graded, tmp_path_factory.mktemp("solutions"), "--solutions"),
            # The stubs as committed: a student's work in exercises/ must not change this test.
            "stubs": pool.submit(_graded, tmp_path_factory.mktemp("stubs"), "--submission",
                                 str(write_stubs(tmp_path_factory.mktemp("pristine"), TOPICS))),
        }


@pytest.fixture(scope="module")
def solutions_run(runs) -> tuple[dict[str, Any], Path, str]:
    return runs["solutions"].result()


@pytest.fixture(scope="module")
def stubs_run(runs) -> tuple[dict[str, Any], Path, str]:
    return runs["stubs"].result()


# ---- (a) the reference solutions score 100% ----


def test_the_reference_solutions_score_full_marks(solutions_run) -> None:
    document, out, log = solutions_run
    tests = document["tests"]
    assert log.startswith("exit status 0\n"), log
    assert len(tests) >= 20, log
    failing = {t["name"]: t["output"] for t in tests if t["status"] != "passed" or t["score"] != t["max_score"]}
    assert not failing, json.dumps(failing, indent=1)[:5000]
    total = sum(t["max_score"] for t in tests)
    assert document["score"] == total > 0
    assert f"total: {total:g} / {total:g} points" in document["output"]
    assert {t["name"].split(" · ")[0] for t in tests} == set(TOPICS)  # every exercise was graded
    assert f"model: {MODEL} (--model)" in document["output"]
    assert "error:" not in document["output"], document["output"]
    assert (out / "report.html").is_file()


# ---- (b) the untouched stubs score 0, every check "not attempted" ----


def test_the_untouched_stubs_score_zero_as_not_attempted(stubs_run, solutions_run) -> None:
    document, out, log = stubs_run
    tests = document["tests"]
    assert log.startswith("exit status 1\n"), log  # checks failed; the grader itself did not
    assert document["score"] == 0, log
    assert [t["name"] for t in tests] == [t["name"] for t in solutions_run[0]["tests"]]  # the same checks
    for test in tests:
        assert test["score"] == 0 and test["status"] == "failed", test
        assert test["output"].startswith("not attempted"), test["output"]
        assert "NotImplementedError" in test["output"]
        assert test["output"].count("\n") <= 2, test["output"]  # one short paragraph, no traceback wall
    assert "error:" not in document["output"], document["output"]  # --report-html '': no report, no error


# ---- (c) the stored expected values agree with the solutions ----


def test_stored_fixtures_agree_with_the_solutions() -> None:
    stored = sorted((REPO / "fixtures" / MODEL).glob("*.json"))
    if not stored:
        pytest.skip(f"no fixtures/{MODEL}/*.json yet: make them with `mechgrade fixtures refresh --model {MODEL}`")
    before = {path: path.read_bytes() for path in stored}
    completed = mechgrade("fixtures", "check", "--model", MODEL)
    assert completed.returncode == 0, _log(completed)
    assert {path: path.read_bytes() for path in stored} == before, "`fixtures check` must write nothing"


# ---- (d) every stub is a stub: NotImplementedError, a docstring, a hint ----


def _functions(path: Path, source: str | None = None) -> list[ast.FunctionDef]:
    """The public functions, and the public methods and __init__ of public classes, named `C.method`."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            found.append(node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for method in node.body:
                if isinstance(method, ast.FunctionDef) and (method.name == "__init__" or not method.name.startswith("_")):
                    method.name = f"{node.name}.{method.name}"
                    found.append(method)
    return found


def _raises_not_implemented(statement: ast.stmt) -> bool:
    if not isinstance(statement, ast.Raise) or statement.exc is None:
        return False
    exc = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _contract_functions() -> list[Any]:
    params = []
    for exercise in CONTRACT_SIGNATURES:
        for signature in _signatures(exercise):
            name = signature.split("(")[0].removeprefix("def ")
            params.append(pytest.param(exercise, name, id=f"{exercise}-{name}"))
    return params


@pytest.mark.parametrize("exercise", sorted(TOPICS))
def test_every_stub_module_has_a_docstring(exercise: str) -> None:
    path = REPO / "exercises" / exercise / f"{TOPICS[exercise]}.py"
    assert ast.get_docstring(ast.parse(stub_source(exercise, TOPICS[exercise]))), f"{path} has no module docstring"


@pytest.mark.parametrize(("exercise", "name"), _contract_functions())
def test_every_stub_function_has_a_hint_and_raises_not_implemented(exercise: str, name: str) -> None:
    path = REPO / "exercises" / exercise / f"{TOPICS[exercise]}.py"
    functions = {f.name: f for f in _functions(path, stub_source(exercise, TOPICS[exercise]))}
    assert name in functions, f"{path} does not define {name}"
    function = functions[name]
    body = function.body[1:]  # after the docstring
    assert len(body) == 1 and _raises_not_implemented(body[0]), (
        f"{path.name}:{name} must only `raise NotImplementedError(...)` after its docstring"
    )
    doc = ast.get_docstring(function)
    assert doc and re.search(r"^Hint", doc, flags=re.M), f"{path.name}:{name} has no 'Hint' in its docstring"


# ---- (e) stubs, solutions and the contract agree on names and signatures ----


def _signature(function: ast.FunctionDef) -> str:
    returns = f" -> {ast.unparse(function.returns)}" if function.returns else ""
    return f"def {function.name}({ast.unparse(function.args)}){returns}"


def _contract(signature: str) -> ast.FunctionDef:
    qualified = signature.removeprefix("def ").split("(")[0]  # `C.method` for a method
    node = ast.parse(signature.replace(qualified, qualified.split(".")[-1], 1) + ": ...").body[0]
    assert isinstance(node, ast.FunctionDef)
    node.name = qualified
    return node


def _agrees_with_contract(code: ast.FunctionDef, contract: ast.FunctionDef) -> list[str]:
    """What differs: names, order and defaults of parameters, the return type, and every annotation
    the contract writes (it leaves model, cache and logits unannotated; code may annotate them)."""
    problems = []
    for kind in ("posonlyargs", "args", "kwonlyargs"):
        have, want = getattr(code.args, kind), getattr(contract.args, kind)
        if [a.arg for a in have] != [a.arg for a in want]:
            problems.append(f"{kind}: {[a.arg for a in have]} != {[a.arg for a in want]}")
            continue
        for a, b in zip(have, want):
            if b.annotation is not None and (a.annotation is None or ast.unparse(a.annotation) != ast.unparse(b.annotation)):
                problems.append(f"{a.arg}: annotation {ast.unparse(a.annotation) if a.annotation else None} != {ast.unparse(b.annotation)}")
    for kind in ("defaults", "kw_defaults"):
        have = [ast.unparse(d) if d is not None else None for d in getattr(code.args, kind)]
        want = [ast.unparse(d) if d is not None else None for d in getattr(contract.args, kind)]
        if have != want:
            problems.append(f"{kind}: {have} != {want}")
    if bool(code.args.vararg) != bool(contract.args.vararg) or bool(code.args.kwarg) != bool(contract.args.kwarg):
        problems.append("*args/**kwargs differ")
    if (ast.unparse(code.returns) if code.returns else None) != ast.unparse(contract.returns):
        problems.append(f"returns {ast.unparse(code.returns) if code.returns else None} != {ast.unparse(contract.returns)}")
    return problems


@pytest.mark.parametrize("exercise", sorted(TOPICS))
def test_stub_and_solution_signatures_are_identical_and_match_the_contract(exercise: str) -> None:
    topic = TOPICS[exercise]
    stub = {f.name: f for f in _functions(REPO / "exercises" / exercise / f"{topic}.py", stub_source(exercise, topic))}
    solution = {f.name: f for f in _functions(REPO / "solutions" / exercise / f"{topic}.py")}
    contract = {c.name: c for c in map(_contract, _signatures(exercise))}
    assert list(stub) == list(contract), f"stub functions {list(stub)} != contract {list(contract)}"
    # Solutions may add public helpers; the contract's functions must be there, and the stub has no extras.
    assert set(contract) <= set(solution), f"solutions/{exercise}/{topic}.py lacks {set(contract) - set(solution)}"
    for name, want in contract.items():
        assert _signature(stub[name]) == _signature(solution[name]), (
            f"stub and solution differ:\n  {_signature(stub[name])}\n  {_signature(solution[name])}"
        )
        problems = _agrees_with_contract(stub[name], want)
        assert not problems, f"{name}: {_signature(stub[name])} breaks the contract: {problems}"


def test_the_contract_names_every_exercise_and_its_functions() -> None:
    assert sorted(CONTRACT_SIGNATURES) == sorted(TOPICS)
    assert all(CONTRACT_SIGNATURES[exercise] for exercise in TOPICS)


# ---- (f) a student's work in exercises/ does not change the package's own tests ----


def test_the_package_tests_pass_with_a_solved_exercise_in_the_working_tree(tmp_path: Path) -> None:
    """A clone of HEAD whose exercises/03 holds a solution, as a student's checkout would: the
    tests that grade and read the stubs still pass there (they take the stubs from git)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)], check=True, timeout=120)
    (clone / "exercises" / "03" / "attention.py").write_text((REPO / "solutions" / "03" / "attention.py").read_text())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MECHGRADE_MODEL": MODEL, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(clone)}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_exercises_end_to_end.py", "-q", "-p", "no:cacheprovider",
         "-k", "untouched_stubs or every_stub or signatures_are_identical", f"--basetemp={tmp_path / 'basetemp'}"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    assert " passed" in completed.stdout and "failed" not in completed.stdout
