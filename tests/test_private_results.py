"""Results are written in a private folder the run creates (mode 700) and moved into place at the end.

While a run is on, its destination holds nothing of it: results.json and the HTML report are made
in a run folder beside it (``.mechgrade-run-...``, the run's own, mode 700) and renamed into place
once the run ends, on every way out that still writes results. A run stopped half-way leaves no
file of its own in the destination; a killed one leaves its run folder, which ``mechgrade repair``
and the next run remove.

The graded projects need no model: each run costs a pytest start.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from graded_project import GradedProject, make_project, new_project

from grader.classroom import grade_all
from grader.classroom.inputs import Submission
from grader.grading import run_folder

STUB = '''
    import os, time

    def add(a, b):
        return a + b

    def wait():
        time.sleep(float(os.environ.get("WAIT_SECONDS", "0")))
        return "done"

    def die():
        os._exit(13)  # not an exit status pytest uses
'''
FIRST = '''
    @pytest.mark.points(2)
    def test_add(student, grade):
        """add() adds"""
        grade.compare("add(1, 2)", student.add(1, 2), 3)
'''
# Checks are trusted code: this one looks at the results folder from inside the run.
LOOK = FIRST + '''
    def test_look(grade):
        """looks at the results folder while the run is on"""
        import json, os, stat
        from pathlib import Path

        seen = {}
        for name in os.listdir("out"):
            info = os.lstat(os.path.join("out", name))
            seen[name] = {"mode": stat.S_IMODE(info.st_mode), "uid": info.st_uid, "folder": stat.S_ISDIR(info.st_mode),
                          "holds": sorted(os.listdir(os.path.join("out", name))) if stat.S_ISDIR(info.st_mode) else []}
        Path("seen.json").write_text(json.dumps(seen))
        grade.check("looked", True, "")
'''
WAIT = FIRST + '''
    def test_wait(student, grade):
        """a check that takes its time"""
        grade.check("waited", student.wait() == "done", "no")
'''
DIES = FIRST + '''
    def test_zz_dies(student):
        student.die()
'''


def run_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(run_folder.PREFIX))


def test_results_appear_only_at_the_end_and_are_made_in_a_private_folder_the_run_creates(pytester: pytest.Pytester) -> None:
    project: GradedProject = make_project(pytester, LOOK, stub=STUB)
    (project.root / "out").mkdir()
    project.run("--report-html", "out/report.html")

    seen = json.loads((project.root / "seen.json").read_text())
    assert "results.json" not in seen and "report.html" not in seen, f"the destination held a result mid-run: {seen}"
    private = [entry for name, entry in seen.items() if name.startswith(run_folder.PREFIX)]
    assert len(private) == 1, seen
    assert private[0]["folder"] and private[0]["mode"] == 0o700 and private[0]["uid"] == os.geteuid()
    assert "results.json" in private[0]["holds"]  # written there as checks finished

    assert sorted(p.name for p in (project.root / "out").iterdir()) == ["report.html", "results.json"]
    assert project.results()["score"] == 3  # both checks passed
    assert stat.S_IMODE((project.root / "out/results.json").stat().st_mode) == 0o644  # as readable as before


def test_a_not_graded_run_moves_its_reports_into_place_too(pytester: pytest.Pytester) -> None:
    project: GradedProject = make_project(pytester, FIRST, stub=STUB)
    result = project.run("--report-html", "out/report.html", "--submission", "missing-folder")
    assert result.ret != 0
    assert sorted(p.name for p in (project.root / "out").iterdir()) == ["report.html", "results.json"]
    assert "missing-folder" in project.results()["output"]


# ---- runs that do not reach their end: the real `mechgrade grade`, in a process of its own ----


def course(tmp_path: Path, checks: str) -> GradedProject:
    """A course project `mechgrade grade` can grade (exercises/ and fixtures/), with out/ to write to."""
    (tmp_path / "course" / "out").mkdir(parents=True)
    return new_project(tmp_path / "course", checks, stub=STUB, fixtures={"x": 1})


@pytest.fixture
def project(tmp_path: Path) -> GradedProject:
    return course(tmp_path, WAIT)


def mechgrade(project: GradedProject, *args: str, wait: float = 0, **options: object) -> subprocess.Popen[str]:
    env = {**os.environ, "MECHGRADE_PROJECT": str(project.root), "MECHGRADE_MODEL": "toy-gpt2",
           "HF_HUB_OFFLINE": "1", "WAIT_SECONDS": str(wait), "PYTHONPATH": os.pathsep.join(filter(None, [str(project.root), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "grader", *args]
    return subprocess.Popen(command, cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **options)  # type: ignore[call-overload]


def grade(project: GradedProject, wait: float = 0) -> subprocess.Popen[str]:
    return mechgrade(project, "grade", "--gradescope-json", "out/results.json", "--report-html", "out/report.html",
                     "--check-timeout", "120", wait=wait, start_new_session=True)


def wait_for_first_check(project: GradedProject, process: subprocess.Popen[str]) -> Path:
    """Until the first check's result is in the run folder (the slow check then runs); that folder."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        for folder in run_folders(project.root / "out"):
            results = folder / "results.json"
            if results.exists() and '"score": 2' in results.read_text():
                return folder
        time.sleep(0.1)
    raise AssertionError(f"the first check never finished:\n{process.communicate()[0][-3000:]}")


def test_a_run_stopped_by_sigterm_leaves_nothing_half_written_and_files_what_it_graded(project: GradedProject) -> None:
    process = grade(project, wait=600)
    private = wait_for_first_check(project, process)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700 and private.stat().st_uid == os.geteuid()
    assert [p.name for p in (project.root / "out").iterdir()] == [private.name], "a result reached its destination mid-run"

    process.send_signal(signal.SIGTERM)  # `kill` of mechgrade
    output = process.communicate(timeout=120)[0]
    assert [p.name for p in (project.root / "out").iterdir()] == ["results.json"], output  # no report was made
    document = project.results()
    assert document["output"].startswith("grading was interrupted"), document["output"]
    assert [t["score"] for t in document["tests"]] == [2, 0]  # the first check kept its points


def test_a_grading_process_that_dies_still_gets_its_results_moved_into_place(tmp_path: Path) -> None:
    project = course(tmp_path, DIES)
    output = grade(project).communicate(timeout=120)[0]
    assert [p.name for p in (project.root / "out").iterdir()] == ["results.json"], output
    document = project.results()
    assert "the grading process ended abnormally" in document["output"]
    assert [t["score"] for t in document["tests"]] == [2, 0]


def test_a_killed_run_leaves_only_its_run_folder_which_mechgrade_repair_removes(project: GradedProject) -> None:
    (project.root / "out/results.json").write_text('{"score": 99}')  # an earlier run's
    process = grade(project, wait=600)
    private = wait_for_first_check(project, process)
    grading = [int(p) for p in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()]
    os.kill(process.pid, signal.SIGKILL)  # mechgrade, which would have moved the results into place ...
    for pid in grading:  # ... and the grading process itself: neither can clean up
        os.kill(pid, signal.SIGKILL)
    process.communicate(timeout=60)
    assert grading, "no grading process was found"
    # An earlier run's results.json is not left to pass for this run's (mechgrade removes it first).
    assert [p.name for p in (project.root / "out").iterdir()] == [private.name]

    repaired = mechgrade(project, "repair").communicate(timeout=60)[0]
    assert str(private) in repaired, repaired
    assert list((project.root / "out").iterdir()) == []


def test_the_next_run_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    project = course(tmp_path, DIES)
    died = subprocess.run([sys.executable, "-m", "pytest", "exercises", "-p", "no:cacheprovider", "--report-html", "",
                           "--gradescope-json", "out/results.json"], cwd=project.root, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "MECHGRADE_MODEL": "toy-gpt2", "HF_HUB_OFFLINE": "1",
                                            "PYTEST_ADDOPTS": ""})
    assert died.returncode == 13, died.stdout + died.stderr  # the student's os._exit ended pytest itself
    left = run_folders(project.root / "out")
    assert [p.name for p in (project.root / "out").iterdir()] == [p.name for p in left] and len(left) == 1

    project.write("exercises/01/test_01_demo.py", (project.root / "exercises/01/test_01_demo.py").read_text()
                  .replace("student.die()", "pass"))
    grade(project).communicate(timeout=120)
    assert [p.name for p in (project.root / "out").iterdir()] == ["report.html", "results.json"]


def test_a_live_runs_folder_is_never_removed(tmp_path: Path) -> None:
    outputs = run_folder.RunFolder([tmp_path / "results.json"])
    private = outputs.private(tmp_path / "results.json")
    private.write_text("{}")
    try:
        run_folder.remove_leftovers()
        assert private.exists()
        assert outputs.publish(tmp_path / "results.json")
    finally:
        outputs.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_grade_all_stages_each_submission_in_a_private_folder_of_its_own(tmp_path: Path) -> None:
    staging = grade_all._staging(tmp_path, Submission("eve", tmp_path / "eve"))
    assert staging.parent.parent == tmp_path  # beside its destination: the final move is a rename
    assert stat.S_IMODE(staging.stat().st_mode) == 0o700
