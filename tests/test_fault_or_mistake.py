"""Fault or mistake: a check that fails because the machine failed says so, and the run is marked
as needing a re-grade; a genuine error of the student's code is still the student's.

The environment's: an OSError of the machine's kind (no permission, I/O, full disk...) on a path
outside the submission and the scratch folder; a MemoryError in the grader's own process; a worker
killed by the kernel's out-of-memory killer. Each kind is shown, and beside it the student's own
version of the same error, which costs the check as before.
"""

from __future__ import annotations

import faulthandler
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from graded_project import GradedProject, new_project

from grader.classroom.gradebook import gradebook_from
from grader.sandbox import faults

AS_ROOT = pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                             reason="the worker runs as another user only when the grader is root")

CHECKS = '''
    import os

    @pytest.mark.points(2)
    def test_machine_file(student, grade):
        """reads a file the machine provides"""
        grade.check("read", student.read(os.environ["MACHINE_FILE"]) == "ok", "no")

    @pytest.mark.points(2)
    def test_own_file(student, grade):
        """reads a file of its own"""
        grade.check("read", student.read_own() == "ok", "no")

    @pytest.mark.points(2)
    def test_missing_file(student, grade):
        """reads a file that is not there"""
        grade.check("read", student.read("/nonexistent/data.txt") == "ok", "no")

    @pytest.mark.points(1)
    def test_graders_memory(student, grade):
        """the grader runs out of memory"""
        if os.environ.get("GRADER_OOM"):
            raise MemoryError()
        grade.check("ok", True, "no")

    @pytest.mark.points(1)
    def test_students_memory(student, grade):
        """the student's code runs out of memory"""
        grade.check("ok", student.hog() == "ok", "no")
'''
STUB = '''
    import os

    def read(path):
        with open(path) as handle:
            return handle.read()

    def read_own():
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "private.txt")
        with open(path, "w") as handle:
            handle.write("x")
        os.chmod(path, 0)
        if os.geteuid() == 0:  # root reads anything: refuse the way the kernel would refuse a user
            raise PermissionError(13, "Permission denied", path)
        return read(path)

    def hog():
        raise MemoryError("the student's list of a billion floats")
'''


@pytest.fixture(scope="module")
def machine_file() -> Iterator[Path]:
    """A file of the grader's environment that no other user may read (a font in a private venv)."""
    folder = Path(tempfile.mkdtemp(prefix="mechgrade-machine-"))
    os.chmod(folder, 0o755)
    path = folder / "LastResortHE-Regular.ttf"
    path.write_text("ok")
    os.chmod(path, 0o600)
    yield path
    shutil.rmtree(folder)


def grade(root: Path, machine_file: Path, *extra: str, env: dict[str, str] | None = None) -> dict:
    environment = {**os.environ, "MECHGRADE_MODEL": "toy-gpt2", "HF_HUB_OFFLINE": "1",
                   "MACHINE_FILE": str(machine_file), **(env or {})}
    done = subprocess.run([sys.executable, "-m", "pytest", "exercises", "-p", "no:cacheprovider", *extra,
                           "--gradescope-json", "out/results.json", "--report-html", "out/report.html"],
                          cwd=root, env=environment, capture_output=True, text=True, timeout=300)
    document = json.loads((root / "out/results.json").read_text())
    document["terminal"] = done.stdout
    return document


def entry(document: dict, title: str) -> dict:
    [found] = [t for t in document["tests"] if title in t["name"]]
    return found


@pytest.fixture(scope="module")
def isolated(machine_file: Path) -> Iterator[dict]:
    """One isolated grading of the project, as the autograder runs it (the worker is `nobody`)."""
    root = Path(tempfile.mkdtemp(prefix="mechgrade-faults-"))
    os.chmod(root, 0o755)
    new_project(root, CHECKS, stub=STUB, solution=STUB)
    yield grade(root, machine_file, "--isolate", env={"GRADER_OOM": "1"})
    shutil.rmtree(root)


@AS_ROOT
def test_a_file_of_the_machine_the_worker_cannot_read_is_the_environments_fault(isolated: dict) -> None:
    check = entry(isolated, "reads a file the machine provides")
    assert check["score"] == 0 and check["extra_data"]["status"] == "error"
    assert "the grading environment failed, not your code: Permission denied on" in check["output"]
    assert "LastResortHE-Regular.ttf" in check["output"] and "this run needs a re-grade" in check["output"]
    assert "NEEDS A RE-GRADE: reads a file the machine provides" in isolated["output"]


@AS_ROOT
def test_the_students_own_errors_are_still_the_students(isolated: dict) -> None:
    for title in ("reads a file of its own", "reads a file that is not there", "the student's code runs out of memory"):
        check = entry(isolated, title)
        assert check["score"] == 0, title
        assert "grading environment" not in check["output"] and "re-grade" not in check["output"], check["output"]
    assert "re-grade" not in json.dumps([t for t in isolated["output"].splitlines() if "reads a file of its own" in t])


@AS_ROOT
def test_a_memoryerror_in_the_graders_own_process_is_the_environments_fault(isolated: dict) -> None:
    check = entry(isolated, "the grader runs out of memory")
    assert check["output"].splitlines()[-1] == ("the grading environment failed, not your code: the grading process "
                                               "itself ran out of memory (MemoryError); this run needs a re-grade")
    assert "your code raised" not in check["output"]


@AS_ROOT
def test_the_gradebook_says_the_run_needs_a_re_grade(isolated: dict, tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(isolated))
    status = gradebook_from([("student", path)], tmp_path).rows[0].status
    assert status.startswith("needs a re-grade: reads a file the machine provides: the grading environment failed"), status


def killed(how: int) -> int:
    """The wait status of a child process ended by signal `how`."""
    pid = os.fork()
    if pid == 0:
        faulthandler.disable()  # pytest's would print a stack for the SIGSEGV
        os.kill(os.getpid(), how)
        os._exit(0)
    return os.waitpid(pid, 0)[1]


def test_a_worker_the_out_of_memory_killer_ended_is_the_machines_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    status = killed(signal.SIGKILL)
    monkeypatch.setattr(faults, "oom_kills", lambda: 4)
    assert faults.killed_by_the_machine(status, oom_before=3) == (
        "the grading environment failed, not your code: the machine's out-of-memory killer ended the worker (SIGKILL)")


def test_a_worker_that_killed_itself_is_the_students_doing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "oom_kills", lambda: 3)
    assert faults.killed_by_the_machine(killed(signal.SIGKILL), oom_before=3) is None  # the kernel killed nothing
    assert faults.killed_by_the_machine(killed(signal.SIGSEGV), oom_before=3) is None  # a crash of its own code


def test_a_sigkill_nobody_can_account_for_is_blamed_on_the_machine_in_doubt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "oom_kills", lambda: None)  # no cgroup counter to read
    said = faults.killed_by_the_machine(killed(signal.SIGKILL), oom_before=None)
    assert said is not None and said.startswith("the grading environment failed, not your code")


def test_the_kernels_counter_is_read_where_it_is() -> None:
    if not any(counter.exists() for counter in faults.OOM_COUNTERS):
        pytest.skip("no memory cgroup counter here")
    assert isinstance(faults.oom_kills(), int)
