"""One long-lived grading process of `mechgrade grade-all`: grades submission after submission.

    grade-all (grader.classroom.grade_all: the queue, progress, gradebook; imports no torch)
      └─ this process, one per --jobs (pytest in-process, once per submission)
           └─ template: forked by the FIRST run, right after the model load at one thread, before
              this process read any expected value or reference solution; kept for every later run
                └─ worker: forked from the template per exercise of each submission

Each submission is one in-process pytest run with `--isolate`, exactly as `mechgrade grade
--isolate --submission` grades it, except that the model and the template come from the first
run (grader.sandbox.start.keep_template_across_runs). Workers are fresh forks of a template that
never ran student code, each submission's files live in a scratch folder of its own, removed (and
its processes killed) before the next submission starts, and what the workers' user left in the
shared temporary folders (/tmp, /var/tmp, /dev/shm) is removed before and after each submission
(grader.sandbox.shared_temp): no student's code sees another's.

Requests come on stdin, one JSON object a line: {"submission": PATH, "staging": DIR, "notes":
[what staging left out, for the reports]}; the reply
is one JSON line on the stdout this process started with. pytest's own output goes to
DIR/grading.log. A template that died cannot be replaced here (this process now holds expected
values): the reply says so and the process exits, and grade-all starts a fresh one.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from grader.grading.command import GRADING_ENV, REPO_ROOT, pytest_command
from grader.grading.run_folder import hand_over
from grader.sandbox import start
from grader.sandbox.isolated import die_with_parent
from grader.sandbox.shared_temp import private_uid, sweep

RESTART = "restart"  # the reply's status when this process must be replaced
MAX_NOTES = 50  # staging's notes shown in a report; the gradebook's results.json keeps them all


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grader.classroom.job")
    parser.add_argument("--model")
    parser.add_argument("--device")
    parser.add_argument("--exercise", action="append")
    parser.add_argument("--check-timeout", type=float, default=60.0)
    parser.add_argument("--worker-memory", type=int, default=4096)
    parser.add_argument("--max-output", type=int)
    parser.add_argument("--fixtures-dir")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of this process and its workers")
    return parser


def pytest_args(options: argparse.Namespace, submission: str, staging: Path, notes: Sequence[str] = ()) -> list[str]:
    """The arguments `mechgrade grade --isolate --submission` gives pytest, for this submission,
    and what staging left out of it (`notes`: links, special files), for its reports."""
    grade = argparse.Namespace(
        exercise=options.exercise, check_timeout=options.check_timeout, model=options.model, device=options.device,
        report_html=str(staging / "report.html"), junitxml=None, fixtures_dir=options.fixtures_dir,
        max_output=options.max_output, submission=submission, solutions=False, isolate=True,
        worker_memory=options.worker_memory, gradescope_json=str(staging / "results.json"))
    command = pytest_command(grade)
    shown = list(notes[:MAX_NOTES]) + ([f"and {len(notes) - MAX_NOTES} more"] if len(notes) > MAX_NOTES else [])
    return command[command.index("pytest") + 1:] + [f"--staging-note={note}" for note in shown]


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    die_with_parent()  # never outlive grade-all (a killed grade-all leaves no grading behind)
    replies: TextIO = os.fdopen(os.dup(1), "w", buffering=1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # pytest and everything else print into each submission's log, not the replies
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    os.environ.update(GRADING_ENV)

    start.keep_template_across_runs()
    os.chdir(REPO_ROOT)
    for line in sys.stdin:
        request = json.loads(line)
        kept = start._kept
        if kept is not None and not kept.template.alive():
            replies.write(json.dumps({"status": RESTART}) + "\n")
            return 3
        uid = private_uid()
        if uid is not None:  # what a killed run or the last submission left in /tmp is nobody's to read
            sweep(uid)
        reply = grade_one(options, request["submission"], Path(request["staging"]), quiet, request.get("notes", []))
        if uid is not None:  # nothing the workers made outlives the submission
            for path in sweep(uid)[:10]:
                print(f"mechgrade job: could not remove the workers' file {path}", file=sys.stderr)
        replies.write(json.dumps(reply) + "\n")
        settle_memory()
    return 0


def settle_memory() -> None:
    """Collect what the last submission left, then exempt everything still alive (the imports, the
    model) from later collections: each of pytest's runs collects garbage several times on the way
    out, and walking the model and TransformerLens every time cost 0.5 s per submission."""
    gc.collect()
    gc.freeze()


def grade_one(options: argparse.Namespace, submission: str, staging: Path, quiet: int,
              notes: Sequence[str] = ()) -> dict[str, Any]:
    import pytest

    staging.mkdir(parents=True, exist_ok=True)
    # The staging folder is the submission's private run folder (grade-all made it, mode 700, and
    # renames it into place once final): the reports are written there as they are.
    os.environ.update(hand_over({path: path for path in (staging / "report.html", staging / "results.json")}))
    started = time.monotonic()
    log = os.open(staging / "grading.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_err = os.dup(2)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        code = int(pytest.main(pytest_args(options, submission, staging, notes)))
        error = None
    except BaseException as exc:  # the grader's own failure: one submission's line, not the batch
        code, error = -1, f"{type(exc).__name__}: {exc}"
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(quiet, 1)
        os.dup2(saved_err, 2)
        os.close(saved_err)
        os.close(log)
    return {"status": "done", "code": code, "error": error, "seconds": round(time.monotonic() - started, 2)}


if __name__ == "__main__":
    sys.exit(main())
