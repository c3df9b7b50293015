"""Grading changes nothing it did not create, and the worker still cannot read the answers.

As root, isolated grading hides the reference solutions, the expected values and the git history
from the worker. It used to chmod them (and the folder the report went to) to 700 and leave some
of them that way. Now each way out of a run leaves the mode of every folder on the paths involved
exactly as it found it: the project and its parents, solutions/, fixtures/, .git, the results
folders, the submission. Both ways of hiding are run: a mount namespace per worker (nothing
changes at all) and, where the kernel refuses one, modes put back on every way out.

The graded project needs no model, so each run costs a pytest start and a template fork.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from graded_project import GradedProject, new_project

from grader.sandbox import hiding

AS_ROOT = pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                             reason="the worker runs as another user only when the grader is root")

CHECKS = '''
    @pytest.mark.points(1)
    def test_peek(student, grade):
        """the worker cannot read the answers"""
        read = student.peek()
        grade.check("nothing read or written", read == [], f"the worker reached {read}")

    @pytest.mark.points(1)
    def test_wait(student, grade):
        """a check that takes its time"""
        grade.check("waited", student.wait() == "done", "no")
'''
STUB = '''
    import os, time
    ROOT = os.environ.get("PEEK_ROOT", "")

    def peek():
        read = []
        for name in ("solutions/01/demo.py", "fixtures/toy-gpt2/01.json", ".git/HEAD"):
            try:
                with open(os.path.join(ROOT, name)) as handle:
                    handle.read()
                read.append(name)
            except OSError:
                pass
        try:
            with open(os.path.join(ROOT, "out", "results.json.forged"), "w") as handle:
                handle.write("{}")
            read.append("wrote into out/")
        except OSError:
            pass
        return read

    def wait():
        time.sleep(float(os.environ.get("WAIT_SECONDS", "0")))
        return "done"
'''
# An error of the grader's own (not the student's): pytest reports an INTERNALERROR and unwinds.
CRASHING_PLUGIN = '''
def pytest_runtest_logfinish(nodeid, location):
    if "test_peek" in nodeid:
        raise RuntimeError("the grader itself failed")
'''


@pytest.fixture(scope="module")
def project() -> Iterator[GradedProject]:
    # Outside pytest's private (0700) temporary tree, so that the modes say what a worker can reach.
    root = Path(tempfile.mkdtemp(prefix="mechgrade-modes-"))
    os.chmod(root, 0o755)
    built = new_project(root, CHECKS, stub=STUB, solution=STUB, fixtures={"x": 1})
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    for folder in ("out", "submission/01"):
        (root / folder).mkdir(parents=True)
    shutil.copyfile(root / "exercises/01/demo.py", root / "submission/01/demo.py")
    (root / "crash.py").write_text(CRASHING_PLUGIN)
    for folder in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        os.chmod(folder, 0o755)
    yield built
    shutil.rmtree(root, ignore_errors=True)


def modes(root: Path) -> dict[str, int]:
    """The mode of every folder on the paths involved: the project's parents, and everything in it."""
    folders = [*root.parents, root, *(p for p in root.rglob("*") if p.is_dir() and "__pycache__" not in p.parts)]
    return {str(f): f.stat().st_mode for f in folders}


def start(project: GradedProject, method: str, wait: float, *extra: str, total_timeout: float = 300) -> subprocess.Popen[str]:
    """`mechgrade grade --isolate` on the project, as the autograder runs it."""
    env = {**os.environ, "MECHGRADE_PROJECT": str(project.root), "MECHGRADE_MODEL": "toy-gpt2",
           "HF_HUB_OFFLINE": "1", hiding.ENV_HIDING: method, "PEEK_ROOT": str(project.root),
           "WAIT_SECONDS": str(wait), "PYTHONPATH": str(project.root)}
    command = [sys.executable, "-m", "grader", "grade", "--isolate", "--submission", str(project.root / "submission"),
               "--gradescope-json", str(project.root / "out/results.json"),
               "--report-html", str(project.root / "out/report.html"), "--check-timeout", "120",
               "--total-timeout", str(total_timeout), *extra]
    return subprocess.Popen(command, cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, preexec_fn=_ctrl_c_at_its_default)


def _ctrl_c_at_its_default() -> None:
    """As a terminal's foreground command has it: a suite run in the background without job control
    hands its children SIGINT ignored, and the Ctrl-C way out would then test nothing (it did: the
    run went on to its check's time limit, and passed)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until_hidden(project: GradedProject, process: subprocess.Popen[str]) -> None:
    """Until the worker runs the slow check: the solutions are root-only by then (modes)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (project.root / "solutions").stat().st_mode & 0o777 == 0o700:
            time.sleep(3)  # well into the checks
            return
        time.sleep(0.2)
    raise AssertionError("the solutions were never hidden")


def results(project: GradedProject) -> dict:
    return json.loads((project.root / "out/results.json").read_text())


@AS_ROOT
@pytest.mark.parametrize("method", ["namespace", "modes"])
def test_a_run_that_ends_normally_leaves_every_mode_as_it_found_it_and_hid_the_answers(project: GradedProject, method: str) -> None:
    if method == "namespace" and not hiding._namespace_works():
        pytest.skip("this kernel refuses a mount namespace")
    before = modes(project.root)
    process = start(project, method, wait=0)
    output = process.communicate(timeout=300)[0]
    assert modes(project.root) == before, output
    assert results(project)["score"] == 2, output  # "nothing read": the answers were hidden


@AS_ROOT
@pytest.mark.parametrize("way_out", ["exception", "ctrl-c", "sigterm", "total timeout"])
def test_every_way_out_puts_every_mode_back(project: GradedProject, way_out: str) -> None:
    before = modes(project.root)
    if way_out == "exception":
        process = _start_with(project, ("-p", "crash"))
    elif way_out == "total timeout":
        process = start(project, "modes", 600, total_timeout=15)
    else:
        process = start(project, "modes", 600)
        wait_until_hidden(project, process)
        if way_out == "ctrl-c":  # the terminal sends SIGINT to the whole foreground group
            os.killpg(process.pid, signal.SIGINT)
        else:  # `kill`: the mechgrade process only
            process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=300)[0]
    assert modes(project.root) == before, f"modes changed after {way_out}:\n{output[-3000:]}"
    if way_out in ("ctrl-c", "sigterm"):  # the way out was taken, not the check's time limit
        assert "grading was interrupted" in json.dumps(results(project)), output[-3000:]
    assert not list(hiding.JOURNALS.glob("*.json")) or all(
        hiding.alive(json.loads(j.read_text())["pid"]) for j in hiding.JOURNALS.glob("*.json")), "a journal was left"


def _start_with(project: GradedProject, plugin: tuple[str, ...]) -> subprocess.Popen[str]:
    """pytest itself (no mechgrade wrapper), with a plugin that makes the grader fail mid-run."""
    env = {**os.environ, "MECHGRADE_MODEL": "toy-gpt2", "HF_HUB_OFFLINE": "1", hiding.ENV_HIDING: "modes",
           "PEEK_ROOT": str(project.root), "WAIT_SECONDS": "0", "PYTHONPATH": str(project.root)}
    command = [sys.executable, "-m", "pytest", "exercises", "-p", "no:cacheprovider", *plugin, "--isolate",
               "--submission", "submission", "--gradescope-json", "out/results.json", "--report-html", ""]
    return subprocess.Popen(command, cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


@AS_ROOT
def test_what_a_sigkill_leaves_is_put_back_by_mechgrade_repair(project: GradedProject) -> None:
    before = modes(project.root)
    process = start(project, "modes", 600)
    wait_until_hidden(project, process)
    grading = [int(p) for p in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()]
    os.kill(process.pid, signal.SIGKILL)  # the mechgrade process, which would have repaired it ...
    for pid in grading:  # ... and the grading process itself, neither with a chance to clean up
        os.kill(pid, signal.SIGKILL)
    process.communicate(timeout=60)
    assert modes(project.root) != before, "nothing was left changed: this test does not test anything"
    repaired = subprocess.run([sys.executable, "-m", "grader", "repair"], capture_output=True, text=True, timeout=60)
    assert "solutions" in repaired.stdout, repaired.stdout + repaired.stderr
    assert modes(project.root) == before
