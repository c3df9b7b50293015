"""The options of `mechgrade grade-all --slurm`: what clusters differ in, each passed through to sbatch.

Kept apart from grader.classroom.slurm so that building mechgrade's command line imports nothing more.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

ON_INTERRUPT = ("ask", "cancel", "keep")


@dataclass(frozen=True)
class SlurmOptions:
    tasks: int | None = None  # array size; default: one task per grader.classroom.slurm.PER_TASK submissions
    partition: str | None = None
    account: str | None = None
    time: str | None = None  # per task, in Slurm's format (MM, HH:MM:SS, D-HH)
    cpus_per_task: int | None = None
    mem: str | None = None  # per task (--mem), e.g. 8G
    gres: str | None = None  # e.g. gpu:1
    max_running: int | None = None  # tasks at once: --array=...%N
    sbatch_args: tuple[str, ...] = ()  # anything else, verbatim (--qos=..., --constraint=...)
    dry_run: bool = False
    wait: bool = True
    on_interrupt: str = "ask"  # Ctrl-C while waiting: ask, cancel the job, or keep it running
    poll: float = 2.0  # seconds between looks at squeue


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = parser.add_argument_group("grading on Slurm (a job array; DIR and the checkout on a file system the nodes share)")
    s.add_argument("--slurm", action="store_true", help="grade as a Slurm job array, each task one grading process")
    s.add_argument("--tasks", type=int, metavar="N", help="array tasks (default: one per 20 submissions to grade)")
    s.add_argument("--partition", help="sbatch --partition")
    s.add_argument("--account", help="sbatch --account")
    s.add_argument("--time", metavar="LIMIT", help="sbatch --time: each task's limit (e.g. 2:00:00)")
    s.add_argument("--cpus-per-task", type=int, metavar="N", help="sbatch --cpus-per-task (torch threads per task)")
    s.add_argument("--mem", metavar="SIZE", help="sbatch --mem: each task's memory (e.g. 16G)")
    s.add_argument("--gres", metavar="LIST", help="sbatch --gres (e.g. gpu:1)")
    s.add_argument("--max-running", type=int, metavar="N", help="tasks running at once (--array=...%%N)")
    s.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="any other sbatch option, verbatim, e.g. --sbatch-arg=--qos=short (repeatable)")
    s.add_argument("--dry-run", action="store_true", help="print the sbatch script and the split; submit nothing")
    s.add_argument("--no-wait", action="store_true",
                   help="print the job id and return; the same command run later writes the gradebook")
    s.add_argument("--on-interrupt", choices=ON_INTERRUPT, default="ask",
                   help="Ctrl-C while waiting: ask (default; cancels when there is no terminal), cancel the job, "
                        "or keep it running")


def from_args(args: argparse.Namespace) -> SlurmOptions | None:
    """The Slurm options, or None without --slurm (then none of them may be given)."""
    given = {name: getattr(args, name) for name in ("tasks", "partition", "account", "time", "cpus_per_task", "mem",
                                                     "gres", "max_running")}
    if not args.slurm:
        named = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
        named += ["--sbatch-arg"] * bool(args.sbatch_arg) + ["--dry-run"] * args.dry_run + ["--no-wait"] * args.no_wait
        if named:
            raise SystemExit(f"mechgrade grade-all: {', '.join(named)} only go with --slurm")
        return None
    if args.jobs != 1:
        raise SystemExit("mechgrade grade-all: --jobs does not go with --slurm: each task is one grading process; "
                         "--tasks says how many")
    for name in ("tasks", "cpus_per_task", "max_running"):
        if given[name] is not None and given[name] < 1:
            raise SystemExit(f"mechgrade grade-all: --{name.replace('_', '-')} must be at least 1")
    return SlurmOptions(**given, sbatch_args=tuple(args.sbatch_arg), dry_run=args.dry_run, wait=not args.no_wait,
                        on_interrupt=args.on_interrupt)
