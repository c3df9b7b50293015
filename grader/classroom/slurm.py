"""`mechgrade grade-all SUBMISSIONS --out DIR --slurm`: grade a class as a Slurm job array.

This side (a login node) finds the class's submissions as grade-all does, splits what is not yet
graded into the array's tasks, writes DIR/.slurm/<run>/plan.json and grade.sbatch, submits it, and
by default waits: progress from squeue and from the results the tasks file into DIR, then the
gradebook. Each task (grader.classroom.slurm_task) is one `grade-all --jobs 1` over its share,
through the same staging and rename. DIR, the checkout and the Python environment must be on a
file system the nodes share.

DIR/.slurm/job.json exists while a submitted job is not yet settled: the same command then
follows that job instead of submitting another, and a plain `grade-all` refuses to grade beside
it. Settling an ended job gives each submission a task left unfinished a line in the gradebook
that names the task and why it ended (cancelled, over its time limit, out of memory, node lost);
running the command again submits only those.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from grader.classroom import slurm_client
from grader.classroom.grade_all import (
    INPUTS,
    REPO_ROOT,
    STAGING,
    ClassOptions,
    Progress,
    _graded,
    _lock_away,
    file_ungradable,
    find_class,
    results_file,
    write_class_gradebook,
)
from grader.classroom.inputs import Submission
from grader.classroom.slurm_client import Ended, SlurmError
from grader.classroom.slurm_options import SlurmOptions
from grader.classroom.slurm_task import marker
from grader.reports.gradescope import write_failure_results, write_json_atomic

SLURM_DIR = ".slurm"
RECORD = "job.json"  # DIR/.slurm/job.json: the submitted job not yet settled
PER_TASK = 20  # submissions per task when --tasks is not given: start-up (the model load) paid once per 20
JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # a job name sites' tools show and parse
LOCAL_FILE_SYSTEMS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "ramfs", "f2fs", "vfat"}


def grade_on_slurm(options: ClassOptions, slurm: SlurmOptions) -> int:
    """0: every submission graded (or submitted with --no-wait, or a dry run); 1: some left
    ungraded by a task that ended early; 2: Slurm refused; 130: stopped while waiting."""
    out = options.out.resolve()
    record = read_record(out)
    if record is not None:  # a job already submitted into DIR: follow it, never submit a second
        return _follow(options, slurm, out, record)
    if not slurm.dry_run:
        problem = slurm_client.available()
        if problem:
            return _refuse(problem)
        try:  # sbatch checks partition, account and limits before anything is written
            slurm_client.test_submit(render_script(options, slurm, out, out / SLURM_DIR / "run", 1))
        except SlurmError as exc:
            return _refuse(str(exc))
    if slurm.dry_run:
        with tempfile.TemporaryDirectory(prefix="mechgrade-dry-run-") as scratch:
            submissions = find_class(options, out, inputs=Path(scratch))
            return _dry_run(options, slurm, out, submissions)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    submissions = find_class(options, out)
    shutil.rmtree(out / STAGING, ignore_errors=True)  # no job is grading into DIR: what is there is left over
    missing = [s for s in submissions if not _graded(out, s)]
    file_ungradable(out, missing, Progress(len(missing), tty=False))
    gradable = [s for s in missing if s.path is not None]
    if len(missing) < len(submissions):
        say(f"{len(submissions) - len(missing)} of {len(submissions)} submissions already graded in {out}")
    if not gradable:
        say("nothing left to grade on Slurm; nothing submitted")
        shutil.rmtree(out / INPUTS, ignore_errors=True)  # DIR keeps results, not submissions
        return _write_gradebook(options, out, [s.identity for s in submissions], {})
    _warn_unless_shared(slurm, [out, REPO_ROOT, Path(sys.executable)])
    shares = split(gradable, slurm.tasks)
    run = _new_run(out)
    write_json_atomic(plan_of(options, out, submissions, shares), run / "plan.json")
    script = run / "grade.sbatch"
    script.write_text(render_script(options, slurm, out, run, len(shares)), encoding="utf-8")
    lock = _lock_away([options.submissions.resolve(), out], options)  # the tasks inherit how to hide
    try:
        job = slurm_client.submit(script)
    except SlurmError as exc:
        lock.restore()
        shutil.rmtree(run, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        return _refuse(str(exc))
    locked = lock.hand_over()  # the run's record puts them back once the array has ended
    record = {"job": job, "run": str(run), "time": slurm.time, "mem": slurm.mem, "submitted": time.time(),
              "locked": [[folder, mode] for folder, mode in locked]}
    write_json_atomic(record, run / RECORD)  # kept: which job graded this run, and when it was submitted
    write_json_atomic(record, out / SLURM_DIR / RECORD)
    say(f"submitted Slurm job {job} ({job_name(options)}): {len(shares)} tasks grading {len(gradable)} "
        f"submissions into {out}; logs in {run}/task-N.log")
    if not slurm.wait:
        say(f"not waiting: follow it with `squeue -j {job}`; once it has ended, the same command (without "
            f"--no-wait) or `mechgrade grade-all {options.submissions} --out {options.out}` writes the gradebook")
        print(job)
        return 0
    return _wait(options, slurm, out, record)


def _new_run(out: Path) -> Path:
    """DIR/.slurm/run-<date>/: this submission's script, plan, markers and logs."""
    stem = out / SLURM_DIR / dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
    for attempt in range(1, 100):
        run = stem.with_name(stem.name + (f"-{attempt}" if attempt > 1 else ""))
        try:
            run.mkdir(parents=True)
            return run
        except FileExistsError:
            continue
    raise SystemExit(f"mechgrade grade-all: cannot make a folder beside {stem}")


def say(line: str) -> None:
    print(f"mechgrade grade-all: {line}", file=sys.stderr, flush=True)


def _refuse(problem: str) -> int:
    say(problem)
    return 2


# ---- the plan and the script ----


def split(submissions: list[Submission], tasks: int | None) -> list[list[Submission]]:
    """Round-robin over the class's order, so that each task gets a like mix of quick and slow ones."""
    count = tasks or math.ceil(len(submissions) / PER_TASK)
    count = max(1, min(count, len(submissions)))
    return [submissions[i::count] for i in range(count)]


def job_name(options: ClassOptions) -> str:
    return "mechgrade-" + (JOB_NAME_UNSAFE.sub("_", options.submissions.resolve().name)[:40] or "class")


def plan_of(options: ClassOptions, out: Path, submissions: list[Submission],
            shares: list[list[Submission]]) -> dict[str, Any]:
    given = {"submissions": str(options.submissions.resolve()), "model": options.model, "device": options.device,
             "exercises": options.exercises, "check_timeout": options.check_timeout,
             "submission_timeout": options.submission_timeout, "worker_memory": options.worker_memory,
             "fixtures_dir": str(Path(options.fixtures_dir).resolve()) if options.fixtures_dir else None}
    return {"out": str(out), "options": given, "order": [s.identity for s in submissions],
            "tasks": [[{**asdict(s), "path": str(s.path)} for s in share] for share in shares]}


def render_script(options: ClassOptions, slurm: SlurmOptions, out: Path, run: Path, tasks: int) -> str:
    """The sbatch script: one array task per share; every option the user gave passed to sbatch."""
    q = shlex.quote
    array = f"0-{tasks - 1}" + (f"%{slurm.max_running}" if slurm.max_running else "")
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name(options)}", f"#SBATCH --array={array}",
             f"#SBATCH --output={run}/task-%a.log", "#SBATCH --open-mode=append"]
    for flag, value in (("partition", slurm.partition), ("account", slurm.account), ("time", slurm.time),
                        ("cpus-per-task", slurm.cpus_per_task), ("mem", slurm.mem), ("gres", slurm.gres)):
        if value is not None:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [f"#SBATCH {arg}" for arg in slurm.sbatch_args]
    lines += [
        f"# mechgrade grade-all --slurm: the class {options.submissions.resolve()}, graded into {out}.",
        "# Each task grades its share (plan.json beside this script) in one long-lived grading process:",
        "# the model loaded once, a fresh worker per exercise of each submission. DIR, the checkout and",
        "# the Python environment must be on a file system every node sees.",
        f"cd {q(str(REPO_ROOT))} 2>/dev/null || {{ echo \"mechgrade: node $(hostname) cannot see the checkout "
        f"{REPO_ROOT}; grade-all --slurm needs it on a file system the nodes share\" >&2; exit 2; }}",
        f"exec {q(sys.executable)} -m grader.classroom.slurm_task {q(str(run / 'plan.json'))} \"$SLURM_ARRAY_TASK_ID\"",
        ""]
    return "\n".join(lines)


def _dry_run(options: ClassOptions, slurm: SlurmOptions, out: Path, submissions: list[Submission]) -> int:
    missing = [s for s in submissions if not _graded(out, s)]
    gradable = [s for s in missing if s.path is not None]
    shares = split(gradable, slurm.tasks) if gradable else []
    run = out / SLURM_DIR / "run-<date>"
    print(render_script(options, slurm, out, run, max(len(shares), 1)))
    print(f"# the split: {len(gradable)} submissions to grade in {len(shares)} tasks"
          f" ({len(submissions) - len(missing)} already graded, {len(missing) - len(gradable)} with nothing to grade)")
    for index, share in enumerate(shares):
        print(f"# task {index} ({len(share)}): {' '.join(s.shown for s in share)}")
    say("--dry-run: nothing submitted, nothing written")
    return 0


# ---- following a submitted job ----


def read_record(out: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((out / SLURM_DIR / RECORD).read_text(encoding="utf-8"))
        return record if isinstance(record, dict) and "job" in record else None
    except (OSError, ValueError):
        return None


def _follow(options: ClassOptions, slurm: SlurmOptions, out: Path, record: dict[str, Any]) -> int:
    if not (Path(record.get("run", "")) / "plan.json").is_file():
        return _refuse(f"Slurm job {record['job']} was submitted into {out}, but its plan is gone from {record.get('run')}; "
                       f"once that job has ended, remove {out / SLURM_DIR / RECORD}")
    try:
        live = slurm_client.live_tasks(record["job"])
    except SlurmError as exc:
        return _refuse(f"cannot ask Slurm about job {record['job']}, submitted into {out} ({exc}); "
                       f"once it has ended, remove {out / SLURM_DIR / RECORD}")
    if not live and slurm.dry_run:
        say(f"Slurm job {record['job']} has ended and is not settled yet: the same command without --dry-run "
            "writes its gradebook; nothing submitted")
        return 0
    if not live:
        return _settle(options, out, record)
    if slurm.dry_run or not slurm.wait:
        say(f"Slurm job {record['job']} is still grading into {out}: nothing submitted; "
            "the same command without --no-wait or --dry-run follows it")
        return 0
    say(f"following Slurm job {record['job']}, already submitted into {out}")
    return _wait(options, slurm, out, record)


def _wait(options: ClassOptions, slurm: SlurmOptions, out: Path, record: dict[str, Any]) -> int:
    plan = json.loads((Path(record["run"]) / "plan.json").read_text(encoding="utf-8"))
    names = [s["identity"] for share in plan["tasks"] for s in share]
    job = record["job"]
    previous = signal.signal(signal.SIGTERM, _interrupt)
    cancelled = False
    try:
        _watch(job, out, names, len(plan["tasks"]), slurm.poll)
    except KeyboardInterrupt:
        if not _should_cancel(slurm.on_interrupt, job):
            say(f"stopped waiting; Slurm job {job} goes on. The same command follows it again, "
                f"`scancel {job}` cancels it")
            return 130
        cancelled = True
        _cancel(job)
    finally:
        signal.signal(signal.SIGTERM, previous)
    code = _settle(options, out, record, cancelled_here=cancelled)
    return 130 if cancelled else code


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _watch(job: str, out: Path, names: list[str], tasks: int, poll: float) -> None:
    """Until no task of the job is pending or running: one progress line (rewritten on a terminal)."""
    tty = sys.stderr.isatty()
    started, shown, silent_since = time.monotonic(), "", None
    while True:
        try:
            live = slurm_client.live_tasks(job)
            silent_since = None
        except SlurmError as exc:  # a busy controller: keep asking, for a while
            silent_since = silent_since or time.monotonic()
            if time.monotonic() - silent_since > 600:
                raise SystemExit(f"mechgrade grade-all: Slurm has not answered for 10 minutes ({exc}); "
                                 "the job may still run: the same command follows it again") from None
            time.sleep(poll)
            continue
        # a stat per submission, not a read: every 2 s over a shared file system, for a class of hundreds
        graded = sum(results_file(out, Submission(identity)).is_file() for identity in names)
        pending = sum(state == "PENDING" for state, _ in live.values())
        line = (f"Slurm job {job}: {pending} pending, {len(live) - pending} running, {tasks - len(live)} of {tasks} "
                f"tasks ended; {graded}/{len(names)} graded")
        if tty:
            sys.stderr.write(f"\r\x1b[K{line}, {_clock(time.monotonic() - started)}")
        elif line != shown:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        shown = line
        if not live:
            if tty:
                sys.stderr.write("\n")
            return
        time.sleep(poll)


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _should_cancel(on_interrupt: str, job: str) -> bool:
    if on_interrupt != "ask":
        return on_interrupt == "cancel"
    if not sys.stdin.isatty():
        return True  # no one to ask: Ctrl-C means stop, and nothing is left running
    try:
        answer = input(f"\nCancel Slurm job {job}? Its unfinished submissions stay ungraded. [Y/n] ")
    except (KeyboardInterrupt, EOFError):
        return True
    return answer.strip().lower() not in ("n", "no")


def _cancel(job: str) -> None:
    """scancel, then wait until Slurm has no task of the job left: nothing runs once we say so."""
    say(f"cancelling Slurm job {job}")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            slurm_client.cancel(job)
            if not slurm_client.live_tasks(job):
                return
        except SlurmError:
            pass
        time.sleep(1)
    say(f"Slurm job {job} still has tasks after 3 minutes; check `squeue -j {job}`")


# ---- settling an ended job ----


def _settle(options: ClassOptions, out: Path, record: dict[str, Any], cancelled_here: bool = False) -> int:
    """A line for each submission an ended task left ungraded, the gradebook, DIR's modes back."""
    run = Path(record["run"])
    plan = json.loads((run / "plan.json").read_text(encoding="utf-8"))
    try:
        ended = slurm_client.ended_tasks(record["job"])
    except SlurmError:
        ended = {}
    lines: dict[str, Path] = {}
    failures = []
    for index, share in enumerate(plan["tasks"]):
        unfinished = [s["identity"] for s in share if not _graded(out, Submission(s["identity"]))]
        if not unfinished:
            continue
        why = _why(record, run, index, ended.get(index), cancelled_here)
        failures.append(f"task {index}: {why} ({len(unfinished)} of {len(share)} not graded)")
        for identity in unfinished:
            path = run / "unfinished" / f"{Submission(identity).folder}.json"
            log = os.path.relpath(run / f"task-{index}.log", out)
            write_failure_results(path, f"Slurm task {index} of job {record['job']} {why}, before this submission "
                                        f"was graded (log: {log}); run the same command again to grade it")
            lines[identity] = path
    for folder, mode in record.get("locked", []):
        try:
            os.chmod(folder, mode)
        except OSError:
            pass
    (out / SLURM_DIR / RECORD).unlink(missing_ok=True)
    shutil.rmtree(out / STAGING, ignore_errors=True)  # what a stopped task left half-done
    shutil.rmtree(out / INPUTS, ignore_errors=True)  # DIR keeps results, not submissions
    code = _write_gradebook(options, out, plan["order"], lines)
    for failure in failures:
        say(f"Slurm job {record['job']} {failure}")
    if failures:
        say(f"{len(lines)} submissions not graded; run the same command again to submit only those")
        return 1
    return code


def _why(record: dict[str, Any], run: Path, index: int, ended: Ended | None, cancelled_here: bool) -> str:
    """How task `index` ended, in words, from Slurm where it remembers, else from the task's log."""
    if cancelled_here:
        return "was cancelled while grade-all waited (Ctrl-C)"
    log = run / f"task-{index}.log"
    if ended is None or ended.state in ("COMPLETED", "FAILED", ""):
        ended = slurm_client.ended_from_log(log) or ended
    state = ended.state if ended else ""
    node = f" on {ended.node}" if ended and ended.node and ended.node != "None assigned" else ""
    if state.startswith("CANCELLED"):
        return f"was cancelled{node} (scancel)"
    if state == "TIMEOUT":
        limit = f"--time {record['time']}" if record.get("time") else "the partition's default"
        return f"went over its time limit{node} ({limit}; raise it with --time)"
    if state == "OUT_OF_MEMORY":
        limit = f"--mem {record['mem']}" if record.get("mem") else "the partition's default"
        return f"ran out of memory{node} ({limit}; raise it with --mem)"
    if state in ("NODE_FAIL", "BOOT_FAIL"):
        return f"was lost with its node{node}"
    if state == "PREEMPTED":
        return f"was preempted{node}"
    if not marker(run / "plan.json", index, "started").exists():
        if not log.exists():  # Slurm writes the log as the task starts, on the node
            return (f"did not start: it was cancelled while pending, or its node could not see {run} to write "
                    "its log (grade-all --slurm needs DIR and the checkout on a file system the nodes share)")
        return (f"failed before it started grading{node}: its node may not see the checkout {REPO_ROOT} or "
                f"the Python environment {sys.executable} (see its log)")
    exit_code = f", exit code {ended.exit_code}" if ended and ended.exit_code else ""
    return f"ended before finishing{node} ({state or 'state unknown'}{exit_code})"


def _write_gradebook(options: ClassOptions, out: Path, order: list[str], lines: dict[str, Path]) -> int:
    found = []
    for identity in order:
        submission = Submission(identity)
        if _graded(out, submission):
            found.append((submission.shown, results_file(out, submission)))
        elif identity in lines:
            found.append((submission.shown, lines[identity]))
    csv_path, html_path = write_class_gradebook(options, out, found)
    print(f"{csv_path}\n{html_path}")
    return 0


def settle_before_local(out: Path) -> str | None:
    """Before a plain `grade-all` into DIR: None when no Slurm job was submitted into it (or the one
    that was has ended: it is settled now, DIR's modes put back), else a line saying why not now."""
    record = read_record(out.resolve())
    if record is None:
        return None
    job = record["job"]
    try:
        live = slurm_client.live_tasks(job)
    except SlurmError as exc:
        return (f"Slurm job {job} was submitted into {out} and Slurm cannot be asked about it ({exc}); "
                f"once it has ended, remove {out / SLURM_DIR / RECORD}")
    if live:
        return (f"Slurm job {job} is still grading into {out}: follow it with the same command and --slurm, "
                f"or cancel it with `scancel {job}`")
    for folder, mode in record.get("locked", []):
        try:
            os.chmod(folder, mode)
        except OSError:
            pass
    (out.resolve() / SLURM_DIR / RECORD).unlink(missing_ok=True)
    say(f"Slurm job {job}, submitted into {out}, has ended; what it left ungraded (if anything) is graded here")
    return None


# ---- the shared file system ----


def _warn_unless_shared(slurm: SlurmOptions, paths: list[Path]) -> None:
    """Say so when a path the tasks need is on this machine's own disk and the partition has other nodes."""
    nodes = slurm_client.partition_nodes(slurm.partition)
    here = {socket.gethostname(), socket.gethostname().split(".")[0]}
    if not nodes or nodes <= here:
        return  # a one-machine Slurm: every task sees what this machine sees
    for path in paths:
        kind, mount = _file_system(path)
        if kind in LOCAL_FILE_SYSTEMS:
            say(f"warning: {path} is on {kind} mounted at {mount}, usually this machine's own disk; the tasks "
                "run on other nodes and need DIR, the checkout and the Python environment on a file system "
                "they share (a home or project folder on NFS, Lustre, GPFS...)")


def _file_system(path: Path) -> tuple[str, str]:
    """(type, mount point) of the mount that holds `path`, from /proc/mounts; ("", "") when unknown."""
    best = ("", "")
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    target = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = re.sub(r"\\040", " ", fields[1])
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best[1]):
            best = (fields[2], mount)
    return best
