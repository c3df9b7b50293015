"""Grading as an ordinary user: student code is confined by Landlock, and never reaches another
student's work or results, the answers, or the grader.

The suite runs as root, so the commands here run as `nobody` (through setpriv). `nobody` keeps one
capability, CAP_DAC_READ_SEARCH (read and search any folder), only so that it can read the checkout
and the Python environment wherever they are (a CI checkout under /root is root's only): the class
and DIR/ are nobody's own, as an instructor's are, so no file's mode keeps one student from another
here, and every refusal a hostile submission meets is Landlock's.

One grade-all run (the reference solutions first, then a victim and a hostile classmate, exercise
03 on the practice model), one `grade --isolate` run, and one refusal.
"""

from __future__ import annotations

import csv
import json
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from class_runs import FULL, REPO, solution, write

from grader.classroom.identity import folder_name
from grader.sandbox import landlock

NOBODY = "nobody"
KEEP_READING = ["--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search"]
ESCAPED = "ESCAPED"
LEFT_BEHIND = [Path(shared) / f"mechgrade-confined-{uuid.uuid4().hex}" for shared in ("/tmp", "/dev/shm")]


def _why_not() -> str | None:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs Linux and root (to run the command as nobody)"
    if shutil.which("setpriv") is None:
        return "needs setpriv (util-linux)"
    try:
        pwd.getpwnam(NOBODY)
    except KeyError:
        return "needs the user nobody"
    why = landlock.unavailable(landlock.CLASS_ABI)
    return f"needs Landlock ABI {landlock.CLASS_ABI}: {why}" if why else None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


def as_nobody(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**{k: v for k, v in os.environ.items() if k != landlock.ENV_LANDLOCK}, "PYTHONPATH": str(REPO),
                   "HF_HUB_OFFLINE": "1", "HOME": str(home), "MPLCONFIGDIR": str(home), **env}
    user = pwd.getpwnam(NOBODY)
    setpriv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *KEEP_READING]
    return subprocess.run([*setpriv, sys.executable, "-m", "grader", *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=900)


def owned_by_nobody(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    entry = pwd.getpwnam(NOBODY)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return folder


def hostile(victim_work: Path, victim_results: Path, grades: Path) -> str:
    """Exercise 03's reference solution, and at import every attack a classmate could try; if any
    one works, the import raises, and the exercise scores 0 with ESCAPED and the list in its report."""
    attacks = f'''
import json as _json, os as _os
_escaped = []
def _try(what, action):
    try:
        action()
        _escaped.append(what)
    except OSError:
        pass
_try("read the victim's results", lambda: open({str(victim_results)!r}).read())
_try("wrote the victim's results", lambda: open({str(victim_results)!r}, "w").write(_json.dumps({{"score": 999.0}})))
_try("wrote grades.csv", lambda: open({str(grades)!r}, "a").write("aaa_victim,999\\n"))
_try("read the victim's work", lambda: open({str(victim_work)!r}).read())
_try("listed the class", lambda: _os.listdir({str(victim_work.parents[1])!r}))
_try("read the solutions", lambda: open({str(REPO / "solutions" / "03" / "attention.py")!r}).read())
_try("read the expected values", lambda: _os.listdir({str(REPO / "fixtures" / "toy-gpt2")!r}))
for _path in {[str(p) for p in LEFT_BEHIND]!r}:
    _try("left " + _path, lambda: open(_path, "w").write("for the next student"))
_pid = _os.getppid()
while _pid > 1:  # the template, the grading process, grade-all: all the instructor's
    _try(f"signalled process {{_pid}}", lambda: _os.kill(_pid, 0))
    _try(f"read through /proc/{{_pid}}/cwd", lambda: _os.listdir(f"/proc/{{_pid}}/cwd"))
    _pid = int(open(f"/proc/{{_pid}}/stat").read().rsplit(")", 1)[1].split()[1])
if _escaped:
    raise RuntimeError("{ESCAPED}: " + "; ".join(_escaped))
'''
    return solution("03") + attacks


def rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="", encoding="utf-8") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    root = tmp_path_factory.mktemp("not-root")
    klass, out, home = root / "class", root / "work" / "out", root / "home"
    victim_work = write(klass / "aaa_victim" / "03" / "attention.py", solution("03"))
    victim_results = out / folder_name("aaa_victim") / "results.json"
    write(klass / "zzz_hostile" / "03" / "attention.py", hostile(victim_work, victim_results, out / "grades.csv"))
    owned_by_nobody(klass), owned_by_nobody(out.parent), owned_by_nobody(home)
    try:
        done = as_nobody("grade-all", str(klass), "--out", str(out), "--model", "toy-gpt2", "--exercise", "03",
                         home=home)
    finally:
        left = [str(path) for path in LEFT_BEHIND if path.exists()]
        for path in LEFT_BEHIND:
            path.unlink(missing_ok=True)
    assert not left, f"a worker left {left}"
    return done, out


def test_a_hostile_classmate_changes_and_reads_nothing_of_anyone_elses_and_cannot_signal_the_grader(
        graded_class) -> None:
    done, out = graded_class
    assert done.returncode == 0, done.stderr[-3000:]
    graded = rows(out)
    assert {name: graded[name]["total"] for name in ("aaa_victim", "zzz_hostile")} == \
        {"aaa_victim": f"{FULL['03']:g}", "zzz_hostile": f"{FULL['03']:g}"}  # every attack refused
    victim = json.loads((out / folder_name("aaa_victim") / "results.json").read_text(encoding="utf-8"))
    assert victim["score"] == FULL["03"] and victim["extra_data"]["mechgrade"]["submission"] == "aaa_victim"
    assert "999" not in (out / "grades.csv").read_text(encoding="utf-8")
    hostile_report = (out / folder_name("zzz_hostile") / "results.json").read_text(encoding="utf-8")
    assert ESCAPED not in hostile_report


def test_the_reference_solutions_and_a_copy_of_them_score_full_marks_as_an_ordinary_user(graded_class) -> None:
    done, out = graded_class
    assert "the reference solutions scored full marks" in done.stderr
    assert rows(out)["aaa_victim"]["percent_correct"] == "100"


def test_grade_isolate_as_an_ordinary_user_confines_the_worker_too(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("not-root-grade")
    home, work = owned_by_nobody(root / "home"), owned_by_nobody(root / "work")
    other = write(root / "other" / "notes.txt", "another course's file")  # readable, by mode, to anyone
    attacks = hostile(other, work / "someone-elses.json", work / "grades.csv")
    owned_by_nobody(work / "submission")
    write(work / "submission" / "03" / "attention.py", attacks)
    owned_by_nobody(work)
    done = as_nobody("grade", "--isolate", "--submission", str(work / "submission"), "--exercise", "03",
                     "--model", "toy-gpt2", "--report-html", "", "--gradescope-json", str(work / "results.json"),
                     home=home)
    for path in LEFT_BEHIND:
        path.unlink(missing_ok=True)
    results = json.loads((work / "results.json").read_text(encoding="utf-8"))
    assert ESCAPED not in json.dumps(results), done.stdout[-3000:]
    assert results["score"] == FULL["03"], done.stdout[-3000:]


def test_without_landlock_grade_all_as_an_ordinary_user_is_refused_saying_why(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("not-root-off")
    klass, work, home = root / "class", owned_by_nobody(root / "work"), owned_by_nobody(root / "home")
    write(klass / "ann" / "03" / "attention.py", solution("03"))
    owned_by_nobody(klass)
    done = as_nobody("grade-all", str(klass), "--out", str(work / "out"), "--model", "toy-gpt2", home=home,
                     MECHGRADE_LANDLOCK="off")
    assert done.returncode == 2
    assert "Landlock is turned off (MECHGRADE_LANDLOCK=off)" in done.stderr and "--trust-submissions" in done.stderr
    assert not (work / "out").exists()
