"""mechgrade: what is not a plain pytest run.

  mechgrade grade [--submission DIR|NB.ipynb | --solutions] [--exercise NN ...]  grade, write reports
  mechgrade fixtures refresh --model M [--device D] [--exercise NN]      recompute expected values
  mechgrade fixtures check [--model M] [--exercise NN]                   compare, write nothing
  mechgrade toy build [...]                                              train the practice model
  mechgrade report open                                                  open the last HTML report
  mechgrade bundle [--model M] [--out autograder.zip]                    a Gradescope autograder zip
  mechgrade release --out DIR [--exercise NN ...] [--model M ...]        the students' copy: no answers, no hidden checks
  mechgrade notebooks build|check                                        the students' notebooks/, from exercises/
  mechgrade grade-all SUBMISSIONS --out DIR [--jobs N] [...]             grade a class: grades.csv, class.html
  mechgrade grade-all SUBMISSIONS --out DIR --slurm [...]                the same, as a Slurm job array
  mechgrade merge-results RESULTS... --out DIR                           a gradebook from results.json files
  mechgrade repair                                                       undo what a killed grading run left: modes, run folders

mechgrade grade OPTIONS grades as pytest exercises OPTIONS does, with the same options, in a
child process, so that a submission that kills or hangs it still leaves a results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import webbrowser
from pathlib import Path
from typing import Any

from grader.grading.command import (
    DEFAULT_REPORT,
    GRADING_ENV,
    REPO_ROOT,
    model_args,
    pytest_command,
    targets,
)
from grader.grading.run_folder import RunFolder, remove_leftovers
from grader.classroom.slurm_options import add_arguments as slurm_arguments
from grader.classroom.slurm_options import from_args as slurm_options
from grader.models import MODELS
from grader.sandbox.hiding import repair

STOP_GRACE_SECONDS = 20.0  # what a stopped grading process gets to end its workers and put modes back


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "toy":
        try:
            from grader.toy.build import main as toy_main  # late: loaded per command
        except ModuleNotFoundError:  # a student release leaves the practice model's training out
            print("mechgrade toy: building the practice model is an instructor's tool, not part of this "
                  "release; the model ships in fixtures/models/toy-gpt2", file=sys.stderr)
            return 2

        return toy_main(rest)
    if args.command == "notebooks":
        from grader.notebooks.build import main as notebooks_main  # late: loaded per command

        return notebooks_main([args.action, *rest])
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.command == "grade":
        return grade(args)
    if args.command == "fixtures":
        return fixtures(args)
    if args.command == "report":
        return open_report(Path(args.path))
    if args.command == "grade-all":
        return grade_all(args)
    if args.command == "merge-results":
        return merge_results(args)
    if args.command == "repair":
        for line in [*repair(), *remove_leftovers()]:
            print(line)
        return 0
    if args.command == "release":
        from grader.course.release import ReleaseError, build_release  # late: loaded per command

        try:
            print(build_release(Path(args.out), args.exercise, args.model))  # always checks the fixtures for drift
        except ReleaseError as exc:
            print(f"mechgrade release: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "bundle":
        from grader.course.bundle import (  # late: loaded per command
            BundleError,
            build_bundle,
        )

        try:
            print(build_bundle(Path(args.out), args.model, exercises=args.exercise,  # always checks for drift
                               hidden_seed=args.hidden_seed))
        except BundleError as exc:
            print(f"mechgrade bundle: {exc}", file=sys.stderr)
            return 2
        return 0
    parser.print_help()
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mechgrade", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", metavar="MODEL",
                       help=f"{' or '.join(sorted(MODELS))}, or a local Hugging Face GPT-2 folder (default: "
                            "$MECHGRADE_MODEL, else gpt2-small when reachable, else toy-gpt2)")
        p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: CUDA when available, else CPU)")
        p.add_argument("--exercise", action="append", metavar="NN", help="only this exercise (repeatable)")

    g = commands.add_parser("grade", help="grade exercises/ (or a submission) and write the reports")
    model_options(g)
    source = g.add_mutually_exclusive_group()
    source.add_argument("--submission", metavar="DIR", help="grade the modules in DIR (laid out like exercises/, or "
                        "flat), or a notebook (work.ipynb, or a DIR holding one)")
    source.add_argument("--solutions", action="store_true", help="grade the reference solutions")
    g.add_argument("--report-html", default=None, metavar="PATH",
                   help=f"where to write the HTML report (default: {DEFAULT_REPORT} in the project); '' for none")
    g.add_argument("--gradescope-json", metavar="PATH", help="write a Gradescope results.json here")
    g.add_argument("--junitxml", metavar="PATH", help="also write pytest's JUnit XML here")
    g.add_argument("--check-timeout", type=float, default=60.0, help="seconds per check (default 60; 0: none)")
    g.add_argument("--max-output", type=int, metavar="N",
                   help="characters of a check's printed output kept in the reports (default 2000)")
    g.add_argument("--fixtures-dir", metavar="DIR", help="where the expected values live (default: fixtures/)")
    g.add_argument("--held-out", metavar="PATH",
                   help="the hidden checks' inputs (a bundle's held_out.json; default: the fixed ones)")
    g.add_argument("--isolate", action="store_true",
                   help="run student code in worker processes, as an unprivileged user when run as root (Linux)")
    g.add_argument("--worker-memory", type=int, default=4096, metavar="MIB",
                   help="with --isolate: memory a worker may allocate beyond its size at start (default 4096)")
    g.add_argument("--total-timeout", type=float, default=1800.0,
                   help="seconds for the whole run; the grading process is stopped after it (default 1800)")

    f = commands.add_parser("fixtures", help="refresh or check the expected values, from solutions/")
    f.add_argument("action", choices=["refresh", "check"])
    model_options(f)

    commands.add_parser("toy", help="the practice model: see mechgrade toy build --help", add_help=False).add_argument(
        "toy_command", choices=["build"])

    b = commands.add_parser("bundle", help="write a Gradescope autograder zip from git HEAD (setup.sh, run_autograder, the project less solutions/)")
    b.add_argument("--model", choices=sorted(MODELS), default="gpt2-small", help="the model submissions are graded on")
    b.add_argument("--out", default="autograder.zip")
    b.add_argument("--exercise", action="append", metavar="NN", help="only this exercise (repeatable): one assignment")
    b.add_argument("--hidden-seed", metavar="S", help="draw the hidden checks' inputs with this seed and ship their "
                   "expected values, computed now from the solutions (the bundle records the seed's digest only)")

    rel = commands.add_parser("release", help="write the students' copy of the course from git HEAD: stubs, public "
                              "checks and expected values, notebooks, the grader; no solutions, hidden checks or history")
    rel.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder, or an earlier release to replace")
    rel.add_argument("--exercise", action="append", metavar="NN", help="only this exercise (repeatable; default: all)")
    rel.add_argument("--model", action="append", choices=sorted(MODELS),
                     help="also ship this model's public expected values (repeatable; toy-gpt2 always, "
                          "gpt2-small where HEAD has its fixtures)")

    n = commands.add_parser("notebooks", help="write notebooks/NN_<topic>.ipynb from the exercise folders (build), "
                            "or say whether they are out of date (check)")
    n.add_argument("action", choices=["build", "check"])

    c = commands.add_parser("grade-all", help="grade every submission in a folder or zip (isolated); write "
                                             "grades.csv, class.html and each student's reports; resumable")
    c.add_argument("submissions", metavar="SUBMISSIONS", help="a folder or zip: one folder, zip, .ipynb or set of .py files each")
    c.add_argument("--out", required=True, metavar="DIR", help="where the gradebook and the students' reports go")
    c.add_argument("--jobs", type=int, default=1, metavar="N", help="grading processes at once, each with the model loaded once (default 1)")
    model_options(c)
    c.add_argument("--check-timeout", type=float, default=60.0, help="seconds per check (default 60; 0: none)")
    c.add_argument("--submission-timeout", type=float, default=1800.0, metavar="S",
                   help="seconds one submission's grading may take in all (default 1800)")
    c.add_argument("--worker-memory", type=int, default=4096, metavar="MIB",
                   help="memory a worker may allocate beyond its size at start (default 4096)")
    c.add_argument("--fixtures-dir", metavar="DIR", help="where the expected values live (default: fixtures/)")
    c.add_argument("--trust-submissions", action="store_true",
                   help="grade as an ordinary user, with student code running as you (it could change other "
                        "students' results): only for submissions you trust")
    slurm_arguments(c)

    m = commands.add_parser("merge-results", help="merge per-submission results.json files into grades.csv and class.html")
    m.add_argument("results", nargs="+", metavar="RESULTS",
                   help="results.json files, folders holding one, or a folder of those (DIR/<name>/results.json)")
    m.add_argument("--out", required=True, metavar="DIR")

    commands.add_parser("repair", help="put back the folder modes that a grading run killed with SIGKILL left "
                                       "changed (as root, where workers could not use a mount namespace), and "
                                       "remove the private run folders (.mechgrade-run-*) of killed runs")

    r = commands.add_parser("report", help="open the last HTML report in a browser")
    r.add_argument("action", choices=["open"])
    r.add_argument("--path", default=str(REPO_ROOT / DEFAULT_REPORT))
    return parser


def fixtures(args: argparse.Namespace) -> int:
    """Run the checks on the reference solutions, in refresh or check mode, in this process."""
    import pytest

    if args.action == "refresh" and not args.model:
        raise SystemExit("mechgrade fixtures refresh: name the model with --model (" + " or ".join(sorted(MODELS)) + ")")
    pytest_args = [
        *targets(args.exercise),
        "-p", "grader.plugin",
        "--rootdir", str(REPO_ROOT),
        "--solutions",
        f"--fixtures-mode={args.action}",
        "--check-timeout", "0",  # trusted code: on a busy machine a slow check is not drift
        "--report-html", "",
        *model_args(args),
    ]
    os.chdir(REPO_ROOT)
    return int(pytest.main(pytest_args))


def grade(args: argparse.Namespace) -> int:
    """Grade in a child process, so that a submission that kills or hangs it still gets a report.
    The child writes every output into this process's run folder (grader.grading.run_folder), and
    this process moves them into place once the child has ended, however it ended."""
    report, junit, results = _destinations(args)
    if results is not None:
        results.unlink(missing_ok=True)  # a stale file must not pass for this run's result
    outputs = RunFolder([report, junit, results])
    try:
        handed_over = outputs.handed_over()
    except OSError as exc:
        print(f"mechgrade grade: cannot make a private folder beside the results ({exc}); name a folder you can "
              "write with --report-html, --gradescope-json or --junitxml", file=sys.stderr)
        return 2
    try:
        # The grading process is told where each output goes (its reports name it) and writes it
        # into the run folder; pytest's own JUnit XML is written there directly.
        private_junit = None if junit is None else outputs.private(junit)
        code = _grade_in_child(args, outputs, handed_over, private_junit)
        _move_into_place(outputs, [report, junit, results])
    finally:
        outputs.close()
    return code


def _destinations(args: argparse.Namespace) -> tuple[Path | None, Path | None, Path | None]:
    """Where the HTML report, the JUnit XML and results.json go (None: not written)."""
    report = None if args.report_html == "" else Path(args.report_html or REPO_ROOT / DEFAULT_REPORT).resolve()
    junit = Path(args.junitxml).resolve() if args.junitxml else None
    results = Path(args.gradescope_json).resolve() if args.gradescope_json else None
    return report, junit, results


def _grade_in_child(args: argparse.Namespace, outputs: RunFolder, handed_over: dict[str, str],
                    junit: Path | None) -> int:
    """Run the grading process; say in results.json how it ended when it did not end by itself."""
    from grader.reports.gradescope import record_abnormal_end  # late: loaded per command

    pytest_args = pytest_command(argparse.Namespace(**{**vars(args), "junitxml": str(junit) if junit else None}))
    results = outputs.private(Path(args.gradescope_json)) if args.gradescope_json else None
    started = time.monotonic()
    child = subprocess.Popen(pytest_args, cwd=REPO_ROOT, env={**os.environ, **GRADING_ENV, **handed_over})
    outputs.adopt(child.pid)  # its run folder is a leftover only once the child has ended too
    previous = signal.signal(signal.SIGTERM, _stop_child(child))
    try:
        code = child.wait(timeout=args.total_timeout if args.total_timeout > 0 else None)
        died = code < 0 or code > 5  # killed by a signal, or exited by the student's os._exit
        reason = f"the grading process ended abnormally (exit status {code})" if died else None
    except subprocess.TimeoutExpired:
        _end(child)
        code, reason = 124, f"grading was stopped after {args.total_timeout:g} s"
    except KeyboardInterrupt:  # Ctrl-C reached the child too: let it clean up
        code = _end(child, asked=True)
        reason = "grading was interrupted"
    finally:
        signal.signal(signal.SIGTERM, previous)
        repair(only_pid=child.pid)  # what a grading process killed before its clean-up left changed
    if results is not None and reason is not None:
        record_abnormal_end(results, reason, time.monotonic() - started)
    if reason:
        print(f"mechgrade: {reason}", file=sys.stderr)
    return code


def _move_into_place(outputs: RunFolder, destinations: list[Path | None]) -> None:
    """Rename each output the grading process wrote into its destination, results.json last (it
    then says what could not be moved)."""
    from grader.reports.gradescope import add_error  # late: loaded per command

    problems: list[str] = []
    for destination in destinations:
        if destination is None:
            continue
        if problems and destination == destinations[-1] and outputs.private(destination).exists():
            for problem in problems:
                add_error(outputs.private(destination), problem)
        try:
            outputs.publish(destination)
        except OSError as exc:
            problems.append(f"could not move {destination.name} into place at {destination}: {exc.strerror}")
            print(f"mechgrade: {problems[-1]}", file=sys.stderr)


def _stop_child(child: subprocess.Popen[bytes]) -> Any:
    """`kill` of this process: passed on to the grading process, which then cleans up."""

    def handler(signum: int, frame: Any) -> None:
        child.send_signal(signum)
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    return handler


def _end(child: subprocess.Popen[bytes], asked: bool = False) -> int:
    """Stop the grading process the way that lets it clean up (SIGTERM unwinds it as Ctrl-C does:
    workers stopped, hidden folders put back), and kill it only if that takes too long."""
    if not asked:
        child.terminate()
    try:
        return child.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        if asked:
            child.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                return child.wait(timeout=STOP_GRACE_SECONDS)
        child.kill()
        return child.wait()


def grade_all(args: argparse.Namespace) -> int:
    """Grade a class in --jobs long-lived processes (grader.classroom.grade_all)."""
    from grader.classroom.grade_all import MAX_JOBS, ClassOptions  # late: loaded per command
    from grader.classroom.grade_all import grade_all as run  # late: loaded per command

    from grader.classroom.slurm import grade_on_slurm, settle_before_local  # late: loaded per command

    if not 1 <= args.jobs <= MAX_JOBS:
        raise SystemExit(f"mechgrade grade-all: --jobs must be between 1 and {MAX_JOBS}")
    slurm = slurm_options(args)
    why = _unconfined_as_ordinary_user(slurm is not None) if not args.trust_submissions else None
    if why is not None:
        print(f"mechgrade grade-all: not run as root, and {why}; student code would run as you and could "
              "change other students' results and grades.csv. Run it as root (or in the course's container), "
              "or pass --trust-submissions if you trust every submission.", file=sys.stderr)
        return 2
    options = ClassOptions(Path(args.submissions), Path(args.out), args.jobs, args.model, args.device,
                           [e.zfill(2) for e in args.exercise] if args.exercise else None, args.check_timeout,
                           args.submission_timeout, args.worker_memory, args.fixtures_dir)
    try:
        if slurm is not None:
            return grade_on_slurm(options, slurm)
        busy = settle_before_local(options.out)  # a Slurm job grading into DIR must not be graded beside
        if busy:
            print(f"mechgrade grade-all: {busy}", file=sys.stderr)
            return 2
        return run(options)
    except ValueError as exc:
        print(f"mechgrade grade-all: {exc}", file=sys.stderr)
        return 2


def _unconfined_as_ordinary_user(on_slurm: bool) -> str | None:
    """Why this (non-root) grade-all cannot keep one student's code from the others' work; None
    when it can. Root gives each grading process a uid of its own; an ordinary user's workers run
    as that user, who owns DIR/, and are kept away from it by Landlock (grader.sandbox.landlock),
    which must also scope signals, or one worker could stop another's."""
    from grader.sandbox import landlock  # late: loaded per command

    if os.geteuid() == 0:
        return None
    if on_slurm:  # the tasks run on other nodes, whose kernels this one cannot vouch for
        return "the cluster's nodes cannot be checked for Landlock from here (--slurm)"
    why = landlock.unavailable(landlock.CLASS_ABI)
    return f"workers cannot be confined well enough here: {why}" if why else None


def merge_results(args: argparse.Namespace) -> int:
    from grader.classroom.gradebook import (  # late: loaded per command
        find_results,
        gradebook_from,
    )
    from grader.classroom.page import write_gradebook  # late: loaded per command

    out = Path(args.out).resolve()
    try:
        found = find_results([Path(r) for r in args.results])
    except FileNotFoundError as exc:
        print(f"mechgrade merge-results: {exc}", file=sys.stderr)
        return 2
    if not found:
        print("mechgrade merge-results: no results.json found", file=sys.stderr)
        return 2
    for path in write_gradebook(gradebook_from(found, out), out, "mechgrade: merged results"):
        print(path)
    return 0


def open_report(path: Path) -> int:
    if not path.exists():
        print(f"mechgrade: no report at {path}; run `mechgrade grade` or `pytest exercises` first", file=sys.stderr)
        return 1
    print(path.resolve().as_uri())
    webbrowser.open(path.resolve().as_uri())
    return 0


if __name__ == "__main__":
    sys.exit(main())
