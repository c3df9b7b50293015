"""One task of a `mechgrade grade-all --slurm` job array: grades its share of the class.

    python -m grader.classroom.slurm_task DIR/.slurm/<run>/plan.json [INDEX]   (INDEX: $SLURM_ARRAY_TASK_ID)

A task is what one `grade-all --jobs 1` is on one machine, and runs the same code
(grader.classroom.grade_all): one long-lived grading process (grader.classroom.job) that loads the
model once and forks its template once, a fresh worker per exercise of each submission, each
submission graded into DIR/.staging/<folder>/ and renamed into place once its results are final. A
submission already graded (by an earlier run, or before Slurm requeued this task) is skipped.

The task leaves two markers beside the plan, which the submitting side reads to tell a task that
finished from one that was stopped: task-N.started (it could see DIR and the checkout) and
task-N.finished. Slurm stops a task (scancel, time limit) with SIGTERM: the grading process is
then ended at once, and the submission it was grading stays ungraded (its staging folder is
removed by the next run).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from grader.classroom.grade_all import (
    JOB_UID_BASE,
    ClassOptions,
    Progress,
    _graded,
    _run_jobs,
    free_uid,
)
from grader.classroom.inputs import Submission
from grader.reports.gradescope import write_json_atomic

SLURM_UIDS = JOB_UID_BASE + 100_000  # above the local jobs' uids; one per Slurm job id


def marker(plan: Path, index: int, kind: str) -> Path:
    return plan.parent / f"task-{index}.{kind}"


def share_of(plan: dict[str, Any], index: int) -> list[Submission]:
    return [Submission(s["identity"], Path(s["path"]), list(s["exercises"]), list(s["problems"]))
            for s in plan["tasks"][index]]


def options_of(plan: dict[str, Any], index: int, logs: Path) -> ClassOptions:
    given = plan["options"]
    return ClassOptions(Path(given["submissions"]), Path(plan["out"]), 1, given["model"], given["device"],
                        given["exercises"], given["check_timeout"], given["submission_timeout"],
                        given["worker_memory"], given["fixtures_dir"], threads=_threads(), logs=logs)


def _threads() -> int | None:
    """The CPUs Slurm gave this task (task/none does not pin it, so the machine's count would overcommit)."""
    for name in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # _run_jobs then ends its grading process before this task exits


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or len(args) > 2:
        print("usage: python -m grader.classroom.slurm_task PLAN [INDEX]", file=sys.stderr)
        return 2
    plan_path = Path(args[0]).resolve()
    index = int(args[1] if len(args) > 1 else os.environ["SLURM_ARRAY_TASK_ID"])
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    out = Path(plan["out"])
    job = os.environ.get("SLURM_JOB_ID", "")
    write_json_atomic({"host": socket.gethostname(), "pid": os.getpid(), "job": job, "time": time.time()},
                      marker(plan_path, index, "started"))
    if os.geteuid() == 0 and "MECHGRADE_WORKER_USER" not in os.environ:
        # Tasks of this job (or of another class's) may share a node: each runs its students'
        # workers as a uid of its own, as each local grading process does.
        os.environ["MECHGRADE_WORKER_USER"] = f"#{free_uid(SLURM_UIDS + (int(job) % 100_000_000 if job.isdigit() else index))}"
    share = share_of(plan, index)
    todo = [s for s in share if not _graded(out, s)]
    print(f"mechgrade task {index}: {len(share)} submissions, {len(share) - len(todo)} already graded; "
          f"grading {len(todo)} on {socket.gethostname()}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, _stop)
    logs = plan_path.parent / f"task-{index}"
    started = time.monotonic()
    progress = Progress(len(todo), tty=False)
    try:
        _run_jobs(options_of(plan, index, logs), out, todo, progress)
    except KeyboardInterrupt:
        print(f"mechgrade task {index}: stopped (SIGTERM) after {progress.done} of {len(todo)}", file=sys.stderr)
        return 143
    write_json_atomic({"graded": progress.done, "seconds": round(time.monotonic() - started, 1)},
                      marker(plan_path, index, "finished"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
