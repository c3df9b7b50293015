"""`mechgrade grade-all`: grade a class's submissions into a gradebook, resumably.

This process imports no torch and never runs student code: it finds the submissions
(grader.classroom.inputs), hands them one at a time to --jobs long-lived grading processes
(grader.classroom.job, each loading the model once), shows progress, and files each result.

Each submission is its exact entry name in the class folder (grader.classroom.identity); its
folders are named from it, injectively (DIR/<slug>-<hash>/). Resumable: a submission is done when
DIR/<folder>/results.json exists and records that same entry name. Each is graded into
DIR/.staging/<folder>/ and the whole folder is renamed into place only once its results are final,
so a stop (Ctrl-C, kill, a crash) leaves either a complete folder or none; starting again grades
only what is missing. grades.csv and class.html are rewritten (atomically) at the end of every
start, from the results.json of every entry the class folder holds now. The staged copies of the
submissions (DIR/.inputs/) are removed as each is graded: DIR/ keeps results, not submissions.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from grader.classroom import canary
from grader.classroom.gradebook import gradebook_from
from grader.classroom.inputs import Submission, exercise_topics, find_submissions
from grader.classroom.page import write_gradebook
from grader.project import PROJECT_ROOT
from grader.reports.gradescope import (
    record_abnormal_end,
    write_failure_results,
    write_json_atomic,
)
from grader.sandbox import hiding

REPO_ROOT = PROJECT_ROOT
STAGING = ".staging"
INPUTS = ".inputs"
JOB_UID_BASE = 2_000_000_000  # grading processes run their workers as uids with no account, from here
MAX_JOBS = 256  # uids one grade-all reserves, one per grading process
PID_LIMIT = 2**22  # the kernel's largest pid (PID_MAX_LIMIT): BASE + PID_LIMIT * MAX_JOBS < 2**32 - 1


@dataclass(frozen=True)
class ClassOptions:
    submissions: Path
    out: Path
    jobs: int = 1
    model: str | None = None
    device: str | None = None
    exercises: list[str] | None = None
    check_timeout: float = 60.0
    submission_timeout: float = 1800.0  # one submission's whole grading
    worker_memory: int = 4096
    fixtures_dir: str | None = None
    threads: int | None = None  # torch threads per grading process (default: the cores / jobs)
    logs: Path | None = None  # the grading processes' own logs (default: DIR/.staging/jobs, removed at the end)


@dataclass
class Job:
    """One grading process and the submission it is grading."""

    process: subprocess.Popen[str]
    submission: Submission | None = None
    started: float = 0.0
    buffer: str = ""
    log: IO[str] | None = None

    @property
    def busy(self) -> bool:
        return self.submission is not None


@dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    first_done: float | None = None
    wall_started: float = field(default_factory=time.time)
    first_done_wall: float | None = None
    tty: bool = field(default_factory=lambda: sys.stderr.isatty())

    def show(self, running: int, last: str = "") -> None:
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        elapsed = time.monotonic() - self.started
        if self.done and self.first_done is not None and self.done < self.total:
            # the pace after the first result: start-up (imports, the model load) is paid once
            pace = (time.monotonic() - self.first_done) / max(self.done - 1, 1) if self.done > 1 else elapsed
            eta = f"ETA {_clock(pace * (self.total - self.done))}"
        else:
            eta = "ETA --:--" if self.done < self.total else f"took {_clock(elapsed)}"
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} graded"
                f"{f', {self.failed} not cleanly' if self.failed else ''}, {running} running, {eta}"
                f"{f'  (last: {last})' if last else ''}")
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line[:160])
            if self.done == self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def grade_all(options: ClassOptions) -> int:
    """Grade what is missing, then write the gradebook. 0: every submission has results; 130: stopped."""
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    submissions = find_class(options, out)
    shutil.rmtree(out / STAGING, ignore_errors=True)  # what a stopped run left half-done
    missing = [s for s in submissions if not _graded(out, s)]
    if len(missing) < len(submissions):
        print(f"mechgrade grade-all: {len(submissions) - len(missing)} of {len(submissions)} submissions already "
              f"graded in {out}; grading the other {len(missing)}", file=sys.stderr)
    progress = Progress(len(missing))
    stopped = False
    locked = _lock_away([options.submissions.resolve(), out], options)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)  # `kill`: stop as Ctrl-C does, gradebook written
    try:
        refused = _canary(options, out) if missing and (REPO_ROOT / "solutions").is_dir() else None
        if refused is not None:
            print(f"mechgrade grade-all: {refused}", file=sys.stderr)
            return 2
        file_ungradable(out, missing, progress)
        _run_jobs(options, out, [s for s in missing if s.path is not None], progress)
    except KeyboardInterrupt:
        stopped = True
    finally:
        order = [(s.shown, results_file(out, s)) for s in submissions if _graded(out, s)]
        csv_path, html_path = write_class_gradebook(options, out, order)
        shutil.rmtree(out / STAGING, ignore_errors=True)
        shutil.rmtree(out / INPUTS, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
        locked.restore()
    timings = os.environ.get("MECHGRADE_CLASS_TIMINGS")  # for benchmarks/class_benchmark.py
    if timings:
        Path(timings).write_text(json.dumps({"graded": progress.done, "started": progress.wall_started,
                                             "first_done": progress.first_done_wall, "finished": time.time()}))
    if stopped:
        print(f"\nmechgrade grade-all: stopped with {len(order)} of {len(submissions)} graded; "
              "run the same command again to grade the rest", file=sys.stderr)
        return 130
    print(f"{csv_path}\n{html_path}")
    return 0


class _Quiet(Progress):
    def show(self, running: int, last: str = "") -> None:
        pass


def _canary(options: ClassOptions, out: Path) -> str | None:
    """Grade the reference solutions first, on a worker, as any submission (grader.classroom.canary);
    None when they score full marks, else why nobody should be graded. They are graded into a
    folder of their own, so no student's folder, nor the gradebook, ever holds them."""
    print("mechgrade grade-all: grading the reference solutions first", file=sys.stderr)
    reference = Submission(canary.NAME, REPO_ROOT / "solutions")
    canary_out = out / canary.NAME  # no student's folder: those never begin with a dot
    shutil.rmtree(canary_out, ignore_errors=True)
    canary_out.mkdir()
    started = time.monotonic()
    try:
        _run_jobs(options, canary_out, [reference], _Quiet(1))
        refused = canary.verdict(results_file(canary_out, reference))
        if refused is None:
            print(f"mechgrade grade-all: the reference solutions scored full marks ({time.monotonic() - started:.1f} s)",
                  file=sys.stderr)
        return refused
    finally:
        shutil.rmtree(canary_out, ignore_errors=True)


def _lock_away(folders: list[Path], options: ClassOptions) -> hiding.ModeLock:
    """As root, workers run as another user: while they run, no student's code may read another's
    work or reports, nor the answers. Where workers can cover folders in a mount namespace of
    their own, each job's workers cover the class's folders too (nothing here changes). Else
    they, and the answers, are made root's only for the whole run (a per-submission lock would
    let one job put a mode back while another's worker runs), and the modes go back at the end:
    the returned lock's restore(), or `mechgrade repair` after a SIGKILL. Not as root, workers
    confined by Landlock never keep these folders (the jobs are told them, to refuse a worker that
    would have to read a folder holding one)."""
    lock = hiding.ModeLock()
    shared = (Path("/"), Path.home(), Path(tempfile.gettempdir()))
    mine = [f for f in folders if f.is_dir() and f not in shared]
    if os.geteuid() != 0:
        os.environ[hiding.ENV_HIDE_ALSO] = os.pathsep.join(str(f) for f in mine)  # the jobs inherit it
        return lock
    if hiding.method() == "namespace":
        os.environ[hiding.ENV_HIDE_ALSO] = os.pathsep.join(str(f) for f in mine)  # the jobs inherit it
    else:
        fixtures = Path(options.fixtures_dir) if options.fixtures_dir else REPO_ROOT / "fixtures"
        lock.lock([*mine, *hiding.answer_folders(REPO_ROOT, fixtures)])
    return lock


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def find_class(options: ClassOptions, out: Path, inputs: Path | None = None) -> list[Submission]:
    """The class's submissions, in the gradebook's order, staged under `inputs` (default DIR/.inputs)."""
    topics = exercise_topics(REPO_ROOT / "exercises", options.exercises)
    if not topics:
        raise SystemExit(f"mechgrade grade-all: no exercise {' '.join(options.exercises or [])} in exercises/")
    return find_submissions(options.submissions.resolve(), inputs or out / INPUTS, topics)


def results_file(out: Path, submission: Submission) -> Path:
    return out / submission.folder / "results.json"


def file_ungradable(out: Path, submissions: list[Submission], progress: Progress) -> None:
    """A line that says why for each submission with nothing to grade."""
    for submission in [s for s in submissions if s.path is None]:
        staging = _staging(out, submission)
        write_failure_results(staging / "results.json", "not graded: " + "; ".join(submission.problems))
        _file(out, submission, staging, progress)


def write_class_gradebook(options: ClassOptions, out: Path, found: list[tuple[str, Path]]) -> tuple[Path, Path]:
    """grades.csv and class.html in DIR from (name shown, results.json) pairs."""
    return write_gradebook(gradebook_from(found, out), out, f"mechgrade: {options.submissions.name}")


def _graded(out: Path, submission: Submission) -> bool:
    """Whether this entry's own results are there: its folder's results.json, recording its name."""
    try:
        document = json.loads(results_file(out, submission).read_text(encoding="utf-8"))
        return bool(document["extra_data"]["mechgrade"]["submission"] == submission.shown)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _staging(out: Path, submission: Submission) -> Path:
    """The submission's private folder (mode 700, made by this run beside its destination): its
    results are written there and it is renamed into place once they are final (`_file`)."""
    staging = out / STAGING / submission.folder
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, mode=0o700)
    os.chmod(staging, 0o700)  # whatever the umask left of it
    return staging


def _has_tests(results: Path) -> bool:
    try:
        return bool(json.loads(results.read_text(encoding="utf-8")).get("tests"))
    except (OSError, ValueError, AttributeError):
        return False


def _file(out: Path, submission: Submission, staging: Path, progress: Progress, reason: str | None = None) -> None:
    """Record what the class export held and what was wrong with it, then move the finished
    folder into place in one rename (its results.json is final by now)."""
    results = staging / "results.json"
    if reason is not None:
        if _has_tests(results):  # what finished keeps its points; the rest already scores 0
            record_abnormal_end(results, reason, 0.0)
        else:
            write_failure_results(results, reason)
    try:
        document = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        write_failure_results(results, reason or "grading left no readable results.json")
        document = json.loads(results.read_text(encoding="utf-8"))
    extra = document.setdefault("extra_data", {})
    extra["mechgrade"] = {"submission": submission.shown, "problems": submission.problems}
    write_json_atomic(document, results)
    os.chmod(staging, 0o755)  # private while it was made; readable once in place, as a report is
    target = out / submission.folder
    if target.exists():  # an earlier result that is not this entry's (or not whole): not ours to keep
        shutil.rmtree(target)
    os.replace(staging, target)
    shutil.rmtree(out / INPUTS / submission.folder, ignore_errors=True)  # graded: the copy is not kept
    progress.done += 1
    graded_cleanly = document.get("tests") and reason is None and not submission.problems
    progress.failed += 0 if graded_cleanly else 1
    if progress.first_done is None and document.get("tests"):  # the first graded one, not a bad input
        progress.first_done, progress.first_done_wall = time.monotonic(), time.time()


# ---- the grading processes ----


def _threads(jobs: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // jobs)


def _start_job(options: ClassOptions, out: Path, index: int) -> Job:
    command = [sys.executable, "-m", "grader.classroom.job", "--check-timeout", str(options.check_timeout),
               "--worker-memory", str(options.worker_memory), "--threads", str(options.threads or _threads(options.jobs))]
    for flag, value in (("--model", options.model), ("--device", options.device), ("--fixtures-dir", options.fixtures_dir)):
        if value:
            command += [flag, str(Path(value).resolve()) if flag != "--device" and Path(value).exists() else value]
    for exercise in options.exercises or []:
        command += ["--exercise", exercise]
    logs = options.logs or out / STAGING / "jobs"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"job-{index}.log", "a", encoding="utf-8")
    env = {**{k: v for k, v in os.environ.items() if k != "MECHGRADE_TIMINGS"},  # one run's, not ours
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    if os.geteuid() == 0 and "MECHGRADE_WORKER_USER" not in os.environ:
        # Two students' workers at once must not share a user, or one could read the other's files
        # (through /proc/<pid>/cwd) or signal it: each grading process gets a uid of its own, which
        # nothing else runs as, so what it owns in /tmp can be removed between submissions (job.py).
        env["MECHGRADE_WORKER_USER"] = f"#{job_uid(index)}"
    # Its own session: Ctrl-C reaches this process only, which then stops the jobs itself.
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                               text=True, env=env, start_new_session=True)
    return Job(process, log=log)


def free_uid(uid: int) -> int:
    """`uid`, or the next one a thousand on that no account has."""
    import pwd

    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1000


def job_uid(index: int, pid: int | None = None) -> int:
    """The uid grading process `index` of this grade-all runs its workers as. Two grade-all runs at
    once have different pids, hence different uids: what one removes of its workers' files in /tmp
    is never the other's (a shared uid let one run delete another's worker folders mid-import)."""
    import pwd

    uid = JOB_UID_BASE + (os.getpid() if pid is None else pid) % PID_LIMIT * MAX_JOBS + index % MAX_JOBS
    try:
        account = pwd.getpwuid(uid).pw_name
    except KeyError:
        return uid
    raise ValueError(f"uid {uid} belongs to the account {account!r}; grade as another user with "
                     "MECHGRADE_WORKER_USER=#<a uid nothing runs as>")


def _stop_job(job: Job) -> int | None:
    try:
        os.killpg(job.process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        code = job.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        code = None
    for stream in (job.process.stdin, job.process.stdout, job.log):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass
    return code


def _run_jobs(options: ClassOptions, out: Path, queue: list[Submission], progress: Progress) -> None:
    if not queue:
        progress.show(0)
        return
    queue = list(queue)
    retried: set[str] = set()
    selector = selectors.DefaultSelector()
    jobs: list[Job] = []
    progress.show(0)

    def launch(index: int) -> Job:
        job = _start_job(options, out, index)
        assert job.process.stdout is not None
        os.set_blocking(job.process.stdout.fileno(), False)
        selector.register(job.process.stdout, selectors.EVENT_READ, job)
        return job

    def replace(job: Job) -> Job:
        selector.unregister(job.process.stdout)
        _stop_job(job)
        fresh = launch(jobs.index(job))
        jobs[jobs.index(job)] = fresh
        return fresh

    try:
        jobs.extend(launch(i) for i in range(min(options.jobs, len(queue))))
        while queue or any(job.busy for job in jobs):
            for job in jobs:
                if not job.busy and queue:
                    job.submission, job.started = queue.pop(0), time.monotonic()
                    staging = _staging(out, job.submission)
                    request = {"submission": str(job.submission.path), "staging": str(staging),
                               "notes": job.submission.problems}  # the report says what was skipped
                    try:
                        assert job.process.stdin is not None
                        job.process.stdin.write(json.dumps(request) + "\n")
                        job.process.stdin.flush()
                    except OSError:
                        pass  # a job that died is found below, by its closed output
            for key, _ in selector.select(timeout=1.0):
                job = key.data
                reply = _read_reply(job)
                if reply is None:
                    continue
                submission = job.submission
                if submission is None:  # an idle job ended: start another when there is work
                    replace(job)
                    continue
                job.submission = None
                if reply.get("status") in ("restart", "died"):
                    code = job.process.poll()
                    replace(job)
                    if reply["status"] == "restart" and submission.folder not in retried:  # its grading never started: try once more
                        retried.add(submission.folder)
                        queue.insert(0, submission)
                        continue
                    reason = f"the grading process ended while grading this submission (exit status {code})"
                    _file(out, submission, out / STAGING / submission.folder, progress, reason)
                else:
                    _finish(out, submission, reply, progress)
                progress.show(sum(j.busy for j in jobs), submission.shown)
            now = time.monotonic()
            for job in list(jobs):
                if job.busy and now - job.started > options.submission_timeout:
                    submission = job.submission
                    assert submission is not None
                    job.submission = None
                    replace(job)
                    _file(out, submission, out / STAGING / submission.folder, progress,
                          f"grading was stopped after {options.submission_timeout:g} s")
                    progress.show(sum(j.busy for j in jobs), submission.shown)
    finally:
        for job in jobs:
            _stop_job(job)
        selector.close()


def _read_reply(job: Job) -> dict[str, Any] | None:
    """The job's reply once a whole line is in; {"status": "died"} once its output closed."""
    assert job.process.stdout is not None
    try:
        chunk = os.read(job.process.stdout.fileno(), 1 << 16)
    except BlockingIOError:
        return None
    except (OSError, ValueError):
        chunk = b""
    job.buffer += chunk.decode("utf-8", errors="replace")
    if "\n" in job.buffer:
        line, job.buffer = job.buffer.split("\n", 1)
        return json.loads(line)
    if not chunk:  # closed: the process ended
        try:
            job.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return {"status": "died"}
    return None


def _finish(out: Path, submission: Submission, reply: dict[str, Any], progress: Progress) -> None:
    staging = out / STAGING / submission.folder
    code = int(reply.get("code", -1))
    reason = None
    if reply.get("error"):
        reason = f"the grader failed on this submission: {reply['error']}"
    elif code not in (0, 1):  # 0: all passed, 1: some checks failed; else pytest could not grade it
        log = (staging / "grading.log").read_text(encoding="utf-8", errors="replace") if (staging / "grading.log").exists() else ""
        said = [line for line in log.splitlines() if line.startswith(("ERROR:", "mechgrade", "UsageError"))]
        reason = f"could not be graded (pytest exit status {code})" + (f": {said[-1]}" if said else "")
    _file(out, submission, staging, progress, reason)
