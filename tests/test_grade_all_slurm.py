"""`mechgrade grade-all --slurm`: a class graded as a Slurm job array, on a real single-node Slurm.

The Slurm comes from tests/slurm/single_node.sh (started here when it is not running, stopped at
the end if started here). Without root or Slurm the tests skip, saying why; in CI
(MECHGRADE_TEST_SLURM=require, set by .ci/run) they fail instead.

The class (exercises 02 and 03, the practice model): four copies of the solutions, three of the
stubs, two with the attention pattern transposed, two hostile ones (one ends its worker from
plot_attention, one prints 10 MB and exits while being imported) and an empty folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from class_runs import FULL, TOPICS, TOTAL, TRUST, solution, write
from pristine import write_stubs
from test_grade_all import HOSTILE_ATTENTION as ENDS_ITS_WORKER
from test_grade_all import WRONG_ATTENTION as WRONG
from test_grade_all import read_csv, with_function

from grader.classroom import slurm as submit_side
from grader.classroom.identity import folder_name
from grader.classroom.slurm_client import ended_from_log
from grader.classroom.slurm_options import SlurmOptions

FULL_03 = str(int(FULL["03"]))  # exercise 03 at full marks, as grades.csv writes it

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "slurm" / "single_node.sh"
SLURM_DIR = Path(os.environ.get("MECHGRADE_SLURM_DIR", "/tmp/mechgrade-slurm"))
REQUIRED = os.environ.get("MECHGRADE_TEST_SLURM") == "require"


LOUD_AND_EXITS = 'import sys\nsys.stdout.write("x" * 10_000_000)\nraise SystemExit(3)\n'
SLOW = with_function(solution("03"), '''
def attention_pattern(cache, layer, head):
    import time
    time.sleep(600)
''')
HOG = with_function(solution("03"), '''
def attention_pattern(cache, layer, head):
    import time
    hoard = []
    for _ in range(40):  # 2 GB, 50 MB at a time: Slurm's check each second sees it grow
        hoard.append(b"x" * 50_000_000)
        time.sleep(0.05)
    return cache["pattern", layer][0, head]
''')
NAPS = with_function(solution("03"), '''
_napped = []


def attention_pattern(cache, layer, head):
    import time
    if not _napped:  # once, on the first call: time for the test to take the node down
        _napped.append(True)
        time.sleep(30)
    return cache["pattern", layer][0, head]
''')


# ---- the Slurm ----


def _running() -> bool:
    pid = SLURM_DIR / "slurmctld.pid"
    try:
        os.kill(int(pid.read_text()), 0)
    except PermissionError:
        return True  # root's slurmctld, seen by a test run as another user
    except (OSError, ValueError):
        return False
    return True


@pytest.fixture(scope="module")
def slurm() -> Iterator[dict[str, str]]:
    """The environment that reaches the test Slurm (SLURM_CONF); Slurm started if it is not running."""
    def unavailable(reason: str) -> None:
        if REQUIRED:
            pytest.fail(f"Slurm is required here (MECHGRADE_TEST_SLURM=require) and {reason}")
        pytest.skip(f"{reason}; run `tests/slurm/single_node.sh start` as root to test on Slurm")

    if not sys.platform.startswith("linux"):
        unavailable("grade-all needs Linux")
    ours = not _running()
    if ours:
        if os.geteuid() != 0:
            unavailable("a single-node Slurm needs root to start")
        started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=900,
                                 env={**os.environ, "MECHGRADE_SLURM_DIR": str(SLURM_DIR)})
        if started.returncode != 0:
            unavailable(f"Slurm did not start: {started.stderr.strip().splitlines()[-1:]}")
    env = {**os.environ, "SLURM_CONF": str(SLURM_DIR / "slurm.conf"), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    yield env
    if ours:
        subprocess.run([str(SCRIPT), "stop"], env={**os.environ, "MECHGRADE_SLURM_DIR": str(SLURM_DIR)}, timeout=120)


def mechgrade(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grader", *args, *TRUST], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def live_jobs(env: dict[str, str]) -> list[str]:
    """The ids of the jobs the test Slurm has pending or running."""
    listed = subprocess.run(["squeue", "-h", "-o", "%A"], env=env, capture_output=True, text=True, check=True).stdout
    return sorted(set(listed.split()))


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that failed half-way cancels what it submitted (the test Slurm runs nothing else)."""
    yield
    if "slurm" in request.fixturenames:
        env = request.getfixturevalue("slurm")
        for job in live_jobs(env):
            subprocess.run(["scancel", job], env=env)


def job_of(out: Path) -> str:
    return json.loads((out / ".slurm" / "job.json").read_text())["job"]


def wait_for(condition, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.2)


# ---- a class graded on Slurm and here ----


GRADE = ("--model", "toy-gpt2", "--exercise", "02", "--exercise", "03", "--check-timeout", "30")


def make_class(root: Path) -> Path:
    for exercise, topic in TOPICS.items():
        for copy in range(1, 5):
            write(root / f"solutions-{copy}" / exercise / f"{topic}.py", solution(exercise))
        for copy in (1, 2):
            write(root / f"wrong-{copy}" / f"{topic}.py", WRONG if exercise == "03" else solution(exercise))
        write(root / "hostile-exit" / exercise / f"{topic}.py", ENDS_ITS_WORKER if exercise == "03" else solution(exercise))
        write(root / "hostile-import" / exercise / f"{topic}.py", LOUD_AND_EXITS if exercise == "02" else solution(exercise))
    for copy in (1, 2, 3):
        write_stubs(root / f"stubs-{copy}", TOPICS)
    (root / "empty").mkdir()
    return root


@pytest.fixture(scope="module")
def a_class(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class(tmp_path_factory.mktemp("slurm-class") / "class")


@pytest.fixture(scope="module")
def both(slurm: dict[str, str], a_class: Path) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """The class graded as a Slurm job array of two tasks, and by `grade-all --jobs 1`."""
    on_slurm, here = a_class.parent / "on-slurm", a_class.parent / "here"
    run = mechgrade(slurm, "grade-all", str(a_class), "--out", str(on_slurm), *GRADE, "--slurm", "--tasks", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    local = mechgrade(slurm, "grade-all", str(a_class), "--out", str(here), *GRADE, "--jobs", "1")
    assert local.returncode == 0, local.stderr[-3000:]
    return on_slurm, here, run


def test_a_class_graded_on_slurm_has_the_grades_of_a_local_run(both) -> None:
    on_slurm, here, _ = both
    rows = read_csv(on_slurm / "grades.csv")
    assert rows == read_csv(here / "grades.csv")  # every column: grades.csv holds no timing
    assert len(rows) == 12 and {r["file"] for r in rows if r["total"] == str(TOTAL)} == {f"solutions-{i}" for i in range(1, 5)}
    for row in rows:  # and every check of every student, point for point
        if row["report"]:
            def checks(out: Path) -> list[tuple[str, float, str]]:
                tests = json.loads((out / folder_name(row["file"]) / "results.json").read_text())["tests"]
                return [(t["name"], t["score"], t["status"]) for t in tests]
            assert checks(on_slurm) == checks(here), row["file"]


def test_each_task_graded_its_share_in_one_process_and_left_a_log(slurm, both) -> None:
    on_slurm, _, run = both
    runs = list((on_slurm / ".slurm").glob("run-*"))
    assert len(runs) == 1 and not (on_slurm / ".slurm" / "job.json").exists()  # settled
    plan = json.loads((runs[0] / "plan.json").read_text())
    shares = [[s["identity"] for s in share] for share in plan["tasks"]]
    assert len(shares) == 2 and sorted(sum(shares, [])) == sorted(r["file"] for r in read_csv(on_slurm / "grades.csv")
                                                                   if r["file"] != "empty")
    for index, share in enumerate(shares):
        log = (runs[0] / f"task-{index}.log").read_text()
        assert f"mechgrade task {index}: {len(share)} submissions" in log
        assert (runs[0] / f"task-{index}.finished").is_file()
    assert "#SBATCH --job-name=mechgrade-class" in (runs[0] / "grade.sbatch").read_text()
    assert "2 of 2 tasks ended; 11/11 graded" in run.stderr
    assert not (on_slurm / ".staging").exists()
    assert not live_jobs(slurm)  # nothing left running


def test_dry_run_prints_the_script_and_the_split_and_submits_nothing(slurm, a_class: Path, tmp_path: Path) -> None:
    out = tmp_path / "graded"
    before = live_jobs(slurm)
    run = mechgrade(slurm, "grade-all", str(a_class), "--out", str(out), *GRADE, "--slurm", "--dry-run",
                    "--tasks", "3", "--max-running", "2", "--partition", "gpu", "--account", "course42", "--time", "30:00",
                    "--cpus-per-task", "4", "--mem", "16G", "--gres", "gpu:1", "--sbatch-arg=--qos=short")
    assert run.returncode == 0, run.stderr
    for line in ("#!/bin/bash", "#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --account=course42",
                 "#SBATCH --time=30:00", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16G", "#SBATCH --gres=gpu:1",
                 "#SBATCH --qos=short", "#SBATCH --job-name=mechgrade-class"):
        assert line in run.stdout.splitlines(), line
    assert "-m grader.classroom.slurm_task" in run.stdout
    split = [line for line in run.stdout.splitlines() if line.startswith("# task ")]
    names = [name for line in split for name in line.split(": ", 1)[1].split()]
    assert len(split) == 3 and sorted(names) == sorted(p.name for p in a_class.iterdir() if p.name != "empty")
    assert "11 submissions to grade in 3 tasks" in run.stdout
    assert not out.exists() and live_jobs(slurm) == before


def test_without_slurm_one_line_and_nothing_written(slurm, a_class: Path, tmp_path: Path) -> None:
    out = tmp_path / "graded"
    no_slurm = {**slurm, "PATH": str(Path(sys.executable).parent)}
    run = mechgrade(no_slurm, "grade-all", str(a_class), "--out", str(out), *GRADE, "--slurm")
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "sbatch, squeue, scancel not found on PATH" in run.stderr
    refused = mechgrade(slurm, "grade-all", str(a_class), "--out", str(out), *GRADE, "--slurm", "--partition", "nosuch")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "sbatch refused" in refused.stderr and "partition" in refused.stderr.lower()
    assert not out.exists()


# ---- faults ----


def test_a_cancelled_task_costs_what_it_had_not_graded_and_the_rerun_grades_only_that(slurm, tmp_path: Path) -> None:
    submissions = tmp_path / "class"
    for name in ("ann", "ben", "cat"):
        write(submissions / name / "03" / "attention.py", solution("03"))
    out = tmp_path / "graded"
    command = ("grade-all", str(submissions), "--out", str(out), "--model", "toy-gpt2", "--exercise", "03", "--slurm")
    submitted = mechgrade(slurm, *command, "--no-wait")
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    assert job == job_of(out) and job in live_jobs(slurm)
    beside = mechgrade(slurm, "grade-all", str(submissions), "--out", str(out), "--model", "toy-gpt2")
    assert beside.returncode == 2 and f"Slurm job {job} is still grading into" in beside.stderr  # no local run beside it

    wait_for(lambda: (out / folder_name("ann") / "results.json").exists())
    subprocess.run(["scancel", job], env=slurm, check=True)
    wait_for(lambda: job not in live_jobs(slurm), 120)
    done = {name for name in ("ann", "ben", "cat") if (out / folder_name(name) / "results.json").exists()}
    assert "ann" in done and len(done) < 3, done
    first = {name: (out / folder_name(name) / "results.json").stat().st_ino for name in done}

    settled = mechgrade(slurm, *command)  # the same command: the ended job's gradebook, nothing submitted
    assert settled.returncode == 1, settled.stderr
    assert live_jobs(slurm) == [] and "submitted Slurm job" not in settled.stderr
    rows = {r["file"]: r for r in read_csv(out / "grades.csv")}
    assert list(rows) == ["ann", "ben", "cat"]
    for name, row in rows.items():
        if name in done:
            assert row["total"] == FULL_03 and row["grading_status"] == "completed"
        else:
            assert row["grading_status"].startswith(f"not graded: Slurm task 0 of job {job} was cancelled"), row
            assert "run the same command again" in row["grading_status"]

    rerun = mechgrade(slurm, *command)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(done)} of 3 submissions already graded" in rerun.stderr
    assert f"grading {3 - len(done)} submissions" in rerun.stderr
    assert {name: (out / folder_name(name) / "results.json").stat().st_ino for name in done} == first  # not graded again
    assert [(r["file"], r["total"], r["grading_status"]) for r in read_csv(out / "grades.csv")] == \
           [(name, FULL_03, "completed") for name in ("ann", "ben", "cat")]


def _class_with_a_slow_student(tmp_path: Path) -> tuple[str, ...]:
    submissions = tmp_path / "class"
    write(submissions / "a-quick" / "03" / "attention.py", solution("03"))
    write(submissions / "b-slow" / "03" / "attention.py", SLOW)
    return ("grade-all", str(submissions), "--model", "toy-gpt2", "--exercise", "03", "--check-timeout", "900",
            "--slurm")


def test_a_task_over_its_time_limit(slurm, tmp_path: Path) -> None:
    """A student whose code sleeps keeps the task past its time limit (a minute: Slurm's smallest)."""
    command = _class_with_a_slow_student(tmp_path)
    timed_out = tmp_path / "timed-out"
    run = mechgrade(slurm, *command, "--time", "1", "--out", str(timed_out))
    assert run.returncode == 1, run.stderr[-3000:]
    rows = {r["file"]: r for r in read_csv(timed_out / "grades.csv")}
    assert rows["a-quick"]["total"] == FULL_03
    assert rows["b-slow"]["grading_status"].startswith("not graded: Slurm task 0 of job "), rows["b-slow"]
    assert "went over its time limit" in rows["b-slow"]["grading_status"]
    assert "raise it with --time" in run.stderr and live_jobs(slurm) == []


def _as_a_terminals_foreground_job() -> None:
    """Ctrl-C's SIGINT at its default, as a shell gives the command it runs in the foreground.

    A test run started in the background by a script (`pytest ... &` without job control: CI
    wrappers, nohup) inherits SIGINT ignored, as POSIX shells do for such jobs, and passes it to
    every child: Python then leaves SIGINT ignored, and grade-all, rightly, never saw the Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_while_waiting_cancels_the_job(slurm, tmp_path: Path) -> None:
    command = _class_with_a_slow_student(tmp_path)
    stopped = tmp_path / "stopped"
    # A time limit the task cannot reach first: on a busy machine the first result may come late in a minute.
    waiting = subprocess.Popen([sys.executable, "-m", "grader", *command, "--time", "30", "--out", str(stopped), *TRUST],
                               cwd=REPO, env=slurm, preexec_fn=_as_a_terminals_foreground_job,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (stopped / folder_name("a-quick") / "results.json").exists())
        waiting.send_signal(signal.SIGINT)
        _, stderr = waiting.communicate(timeout=300)
    finally:
        waiting.kill()  # no-op once it has returned
    assert waiting.returncode == 130, stderr[-3000:]
    assert live_jobs(slurm) == []  # nothing left running once it has returned
    rows = {r["file"]: r for r in read_csv(stopped / "grades.csv")}
    assert rows["a-quick"]["total"] == FULL_03
    assert "was cancelled while grade-all waited (Ctrl-C)" in rows["b-slow"]["grading_status"]


def _enforces_memory(env: dict[str, str]) -> bool:
    """Whether this Slurm kills a task over its --mem: by cgroup, or by accounting (OverMemoryKill)."""
    config = subprocess.run(["scontrol", "show", "config"], env=env, capture_output=True, text=True, check=True).stdout
    return "OverMemoryKill" in config or re.search(r"TaskPlugin\s*=.*cgroup", config) is not None


def test_a_task_out_of_memory_costs_what_it_had_not_graded_and_the_rerun_with_more_grades_only_that(
        slurm, tmp_path: Path) -> None:
    if not _enforces_memory(slurm):
        reason = ("the running test Slurm does not kill a task over its --mem (started by an older "
                  "tests/slurm/single_node.sh?): `tests/slurm/single_node.sh stop`, then `start`")
        if REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)
    submissions = tmp_path / "class"
    for name, source in (("a-quick", solution("03")), ("b-hog", HOG), ("c-late", solution("03"))):
        write(submissions / name / "03" / "attention.py", source)
    out = tmp_path / "graded"
    command = ("grade-all", str(submissions), "--out", str(out), "--model", "toy-gpt2", "--exercise", "03", "--slurm")
    # The grading process, its template and a worker take about 0.7 GB here: a-quick fits, b-hog does not.
    run = mechgrade(slurm, *command, "--mem", "1500M")
    assert run.returncode == 1, run.stderr[-3000:]
    rows = {r["file"]: r for r in read_csv(out / "grades.csv")}
    assert rows["a-quick"]["total"] == FULL_03 and rows["a-quick"]["grading_status"] == "completed"
    for name in ("b-hog", "c-late"):  # the one it was grading, and the one it never reached
        assert rows[name]["grading_status"].startswith("not graded: Slurm task 0 of job "), rows[name]
        assert "ran out of memory" in rows[name]["grading_status"]
        assert "(--mem 1500M; raise it with --mem)" in rows[name]["grading_status"]
    assert "2 submissions not graded" in run.stderr and live_jobs(slurm) == []
    first = (out / folder_name("a-quick") / "results.json").stat().st_ino

    rerun = mechgrade(slurm, *command, "--mem", "4G")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "1 of 3 submissions already graded" in rerun.stderr and "grading 2 submissions" in rerun.stderr
    assert (out / folder_name("a-quick") / "results.json").stat().st_ino == first  # not graded again
    assert [(r["file"], r["total"], r["grading_status"]) for r in read_csv(out / "grades.csv")] == \
           [(name, FULL_03, "completed") for name in ("a-quick", "b-hog", "c-late")]


def _node(env: dict[str, str]) -> str:
    return subprocess.run(["sinfo", "-h", "-o", "%N"], env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_a_task_whose_node_goes_down_costs_what_it_had_not_graded_and_the_rerun_grades_only_that(
        slurm, tmp_path: Path) -> None:
    submissions = tmp_path / "class"
    write(submissions / "a-quick" / "03" / "attention.py", solution("03"))
    write(submissions / "b-naps" / "03" / "attention.py", NAPS)
    out = tmp_path / "graded"
    command = ("grade-all", str(submissions), "--out", str(out), "--model", "toy-gpt2", "--exercise", "03", "--slurm",
               "--time", "30")
    node = _node(slurm)
    # Without --no-requeue Slurm (JobRequeue=1, its default) would run the task again once the node is back.
    waiting = subprocess.Popen([sys.executable, "-m", "grader", *command, "--sbatch-arg=--no-requeue", *TRUST],
                               cwd=REPO, env=slurm, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / folder_name("a-quick") / "results.json").exists())  # b-naps is asleep now
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=mechgrade-test"], env=slurm,
                       check=True)
        _, stderr = waiting.communicate(timeout=300)
    finally:
        waiting.kill()  # no-op once it has returned
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], env=slurm, capture_output=True)
        wait_for(lambda: subprocess.run(["sinfo", "-h", "-o", "%t"], env=slurm, capture_output=True, text=True)
                 .stdout.strip() == "idle", 120)
    assert waiting.returncode == 1, stderr[-3000:]
    rows = {r["file"]: r for r in read_csv(out / "grades.csv")}
    assert rows["a-quick"]["total"] == FULL_03 and rows["a-quick"]["grading_status"] == "completed"
    assert rows["b-naps"]["grading_status"].startswith("not graded: Slurm task 0 of job "), rows["b-naps"]
    assert f"was lost with its node on {node}" in rows["b-naps"]["grading_status"]
    assert f"was lost with its node on {node} (1 of 2 not graded)" in stderr and live_jobs(slurm) == []
    first = (out / folder_name("a-quick") / "results.json").stat().st_ino

    rerun = mechgrade(slurm, *command)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "1 of 2 submissions already graded" in rerun.stderr and "grading 1 submissions" in rerun.stderr
    assert (out / folder_name("a-quick") / "results.json").stat().st_ino == first  # not graded again
    assert [(r["file"], r["total"], r["grading_status"]) for r in read_csv(out / "grades.csv")] == \
           [(name, FULL_03, "completed") for name in ("a-quick", "b-naps")]


# ---- what Slurm leaves in a task's log ----


@pytest.mark.parametrize(("line", "state"), [
    ("slurmstepd-vm: error: *** JOB 5 ON vm CANCELLED AT 2026-12-03T10:12:52 DUE TO TIME LIMIT ***", "TIMEOUT"),
    ("slurmstepd: error: *** JOB 7 ON node3 CANCELLED AT 2026-12-03T10:12:52 ***", "CANCELLED"),
    ("slurmstepd: error: *** JOB 7 ON node3 CANCELLED AT 2026-12-03T10:12:52 DUE TO NODE FAILURE ***", "NODE_FAIL"),
    ("slurmstepd-vm: error: *** JOB 206 ON vm CANCELLED AT 2026-12-03T16:40:25 DUE TO NODE FAILURE, SEE SLURMCTLD LOG "
     "FOR DETAILS ***", "NODE_FAIL"),
    ("slurmstepd: error: Detected 1 oom-kill event(s) in StepId=9.batch. Some of your processes may have been killed",
     "OUT_OF_MEMORY"),
    # killed for memory by accounting (OverMemoryKill), whose CANCELLED line gives no reason
    ("slurmstepd-vm: error: StepId=200.batch exceeded memory limit (1488096256 > 1258291200), being killed\n"
     "slurmstepd-vm: error: Exceeded job memory limit\n"
     "slurmstepd-vm: error: *** JOB 200 ON vm CANCELLED AT 2026-12-03T16:37:30 ***", "OUT_OF_MEMORY"),
])
def test_how_a_task_ended_is_read_from_its_log(tmp_path: Path, line: str, state: str) -> None:
    log = write(tmp_path / "task-0.log", f"mechgrade task 0: 3 submissions\n{line}\n")
    assert ended_from_log(log) is not None and ended_from_log(log).state == state
    assert ended_from_log(write(tmp_path / "clean.log", "mechgrade task 0: 3 submissions\n")) is None
    assert ended_from_log(tmp_path / "missing.log") is None


# ---- a file system the nodes cannot see ----


def test_a_path_on_this_machines_own_disk_is_named_when_the_partition_has_other_nodes(monkeypatch, capsys) -> None:
    shm = Path("/dev/shm")
    if submit_side._file_system(shm)[0] != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    monkeypatch.setattr(submit_side.slurm_client, "partition_nodes", lambda partition: {"node1", "node2"})
    submit_side._warn_unless_shared(SlurmOptions(), [shm])
    warning = capsys.readouterr().err
    assert warning.startswith("mechgrade grade-all: warning: /dev/shm is on tmpfs mounted at /dev/shm")
    assert "need DIR, the checkout and the Python environment on a file system they share" in warning
    monkeypatch.setattr(submit_side.slurm_client, "partition_nodes", lambda partition: {os.uname().nodename})
    submit_side._warn_unless_shared(SlurmOptions(), [shm])  # a one-machine Slurm sees what this machine sees
    assert capsys.readouterr().err == ""


def test_a_task_that_never_started_grading_says_its_node_may_not_see_dir_or_the_checkout(tmp_path: Path) -> None:
    record = {"job": "77", "run": str(tmp_path), "time": None}
    why = submit_side._why(record, tmp_path, 0, submit_side.Ended("FAILED", "node9", "2:0"), False)
    assert why.startswith(f"did not start: it was cancelled while pending, or its node could not see {tmp_path}")
    write(tmp_path / "task-0.log", "mechgrade: node node9 cannot see the checkout\n")
    why = submit_side._why(record, tmp_path, 0, submit_side.Ended("FAILED", "node9", "2:0"), False)
    assert why.startswith("failed before it started grading on node9: its node may not see the checkout")
    write(tmp_path / "task-0.started", "{}")
    why = submit_side._why(record, tmp_path, 0, submit_side.Ended("FAILED", "node9", "1:0"), False)
    assert why == "ended before finishing on node9 (FAILED, exit code 1:0)"
