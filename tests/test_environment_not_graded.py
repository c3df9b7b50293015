"""A grading environment that cannot grade says so, and gives no score.

Two faults seen on a new user's machine: a model asked for by name that is neither cached nor
reachable (the hub client retried for 50 s, then every check of exercise 01 failed and the
student scored 0/7), and a worker user that cannot read a file the checks need (matplotlib's
fonts in a private venv: four plot checks lost 14 points). Either now stops the run before any
check, in one line that says what and how to fix it, and results.json, the report and the
gradebook say "not graded: the grading environment ...".
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from graded_project import GradedProject, new_project

from grader.classroom.gradebook import gradebook_from
from grader.student.preflight import preflight

REPO = Path(__file__).resolve().parent.parent
AS_ROOT = pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                             reason="the worker runs as another user only when the grader is root")


def not_graded(results: Path, report: Path, out: Path) -> None:
    """What every report says of a run the environment could not grade."""
    document = json.loads(results.read_text())
    assert document["tests"] == [] and document["score"] == 0, document
    assert document["output"].startswith("not graded: the grading environment"), document["output"]
    page = report.read_text()
    assert "Not graded: the grading environment" in page and "points <span" not in page
    row = gradebook_from([("student", results)], out).rows[0]
    assert row.status.startswith("not graded: the grading environment"), row.status


def test_a_model_asked_for_that_is_neither_cached_nor_reachable_stops_the_run_at_once(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HOME": str(tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "1"}
    env.pop("MECHGRADE_MODEL", None)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "grader", "grade", "--model", "gpt2-small", "--exercise", "01",
                           "--gradescope-json", str(tmp_path / "results.json"),
                           "--report-html", str(tmp_path / "report.html")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    said = [line for line in (done.stdout + done.stderr).splitlines() if "not graded" in line]
    assert len(said) == 1, done.stdout + done.stderr
    assert "--model toy-gpt2" in said[0] and "from_pretrained('gpt2')" in said[0], said[0]
    assert done.returncode != 0 and "failed" not in done.stdout and "0 / 7" not in done.stdout, done.stdout
    # Measured 4.8-11.6 s at load 4.5-5.7 on 2 cores; the hub client's retries took 50 s before.
    assert took < 30, f"took {took:.1f} s (a pytest start; a hub retry storm takes a minute)"
    not_graded(tmp_path / "results.json", tmp_path / "report.html", tmp_path)


@pytest.fixture
def unreadable(tmp_path: Path) -> Iterator[Path]:
    """A folder root only may enter, holding a folder of files: a venv's fonts under a private folder."""
    folder = Path(tempfile.mkdtemp(prefix="mechgrade-private-"))  # 0700, root's
    (folder / "fonts").mkdir(mode=0o755)
    (folder / "fonts" / "font.ttf").write_bytes(b"\0" * 64)
    yield folder
    shutil.rmtree(folder)


def as_nobody(call: Callable[[], str | None], home: Path) -> str | None:
    """`call()` in a forked child that has become `nobody`, at home in `home` (as a worker is)."""
    import matplotlib.pyplot  # noqa: F401  # as the template preloads it (its style files are root's)

    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.environ.update(HOME=str(home), MPLCONFIGDIR=str(home))
            os.write(write_end, json.dumps(call()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reply:
        said = reply.read()
    os.waitpid(pid, 0)
    return json.loads(said)


@AS_ROOT
def test_the_preflight_names_the_path_who_cannot_read_it_and_the_fix(unreadable: Path) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="mechgrade-scratch-"))
    os.chmod(scratch, 0o777)
    try:
        line = as_nobody(lambda: preflight(["json"], [str(unreadable / "fonts")], str(scratch)), scratch)
    finally:
        shutil.rmtree(scratch)
    assert line == (f"the worker user (nobody) cannot read {unreadable / 'fonts'} (no access to {unreadable}); "
                    f"fix: chmod o+x {unreadable} (or install the grader where that user can read it)")


def test_the_preflight_passes_where_everything_can_be_read(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert preflight(["json", "matplotlib.pyplot"], [str(tmp_path / "model")], str(tmp_path)) is None


CHECKS = '''
    @pytest.mark.points(1)
    def test_one(student, grade):
        grade.check("ran", student.one() == 1, "no")
'''


@pytest.fixture
def project_with_a_private_library() -> Iterator[GradedProject]:
    """A course whose exercises import a library the worker's user cannot read."""
    root = Path(tempfile.mkdtemp(prefix="mechgrade-preflight-"))
    os.chmod(root, 0o755)
    project = new_project(root, CHECKS, stub="import courselib\n\ndef one():\n    return 1\n",
                          solution="import courselib\n\ndef one():\n    return 1\n")
    (root / "lib").mkdir(mode=0o755)
    (root / "lib" / "courselib.py").write_text("VALUE = 1\n")
    os.chmod(root / "lib" / "courselib.py", 0o600)
    yield project
    shutil.rmtree(root)


@AS_ROOT
def test_an_isolated_run_whose_worker_cannot_read_a_library_is_not_graded(project_with_a_private_library: GradedProject) -> None:
    root = project_with_a_private_library.root
    env = {**os.environ, "MECHGRADE_MODEL": "toy-gpt2", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(root / "lib"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "pytest", "exercises", "-p", "no:cacheprovider", "--isolate",
                           "--gradescope-json", "out/results.json", "--report-html", "out/report.html"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    said = [line for line in (done.stdout + done.stderr).splitlines() if "not graded" in line]
    assert said and f"cannot read {root / 'lib' / 'courselib.py'}" in said[0], done.stdout + done.stderr
    assert f"fix: chmod a+r {root / 'lib' / 'courselib.py'}" in said[0]
    assert "test_one" not in done.stdout, "a check ran"
    not_graded(root / "out/results.json", root / "out/report.html", root / "out")
