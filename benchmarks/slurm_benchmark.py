"""`mechgrade grade-all --slurm --tasks N` against `grade-all --jobs N`, on the Slurm this machine reaches.

The class of benchmarks/class_benchmark.py (COPIES copies of the reference solutions and five
hostile submissions), graded on the practice model, PAIRS times by each command in turn (local,
Slurm, local, Slurm...: pairing keeps each ratio meaningful when a shared machine's speed drifts).
Printed per run: the wall time of the whole command; for Slurm also the scheduler's start-up (from
the submission to the first task's start, read from DIR/.slurm/run-*/: job.json and
task-N.started) and the rest. Target: Slurm's rest <= 1.15 x the local wall time.

    SLURM_CONF=... python benchmarks/slurm_benchmark.py [--copies 40] [--tasks 2] [--pairs 2]

On one machine, start a Slurm first: tests/slurm/single_node.sh start (as root).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))


def run(submissions: Path, out: Path, extra: list[str]) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "grader", "grade-all", str(submissions), "--out", str(out), "--model", "toy-gpt2",
               *extra]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(command)}")
    return wall


def scheduler_startup(out: Path) -> float:
    """Seconds from the submission to the first task's start."""
    (run_dir,) = (out / ".slurm").glob("run-*")
    submitted = json.loads((run_dir / "job.json").read_text())["submitted"]
    started = min(json.loads(p.read_text())["time"] for p in run_dir.glob("task-*.started"))
    return started - submitted


def full_marks(out: Path, copies: int) -> str | None:
    """None when every copy of the solutions scored 100%, else what happened."""
    from class_benchmark import check_scores

    try:
        check_scores(out, copies, full=True)
    except SystemExit as exc:
        return str(exc)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    from class_benchmark import HOSTILE, make_class

    with tempfile.TemporaryDirectory(prefix="mechgrade-slurm-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        count = make_class(work / "class", args.copies, work / "hostile-out")
        print(f"{count} submissions ({args.copies} copies of the solutions + {len(HOSTILE)} hostile), "
              f"{os.cpu_count()} CPUs; --jobs {args.tasks} against --slurm --tasks {args.tasks}", flush=True)
        ratios = []
        for pair in range(args.pairs):
            local_out, slurm_out = work / f"local-{pair}", work / f"slurm-{pair}"
            local = run(work / "class", local_out, ["--jobs", str(args.tasks)])
            on_slurm = run(work / "class", slurm_out, ["--slurm", "--tasks", str(args.tasks)])
            startup = scheduler_startup(slurm_out)
            same = (local_out / "grades.csv").read_text() == (slurm_out / "grades.csv").read_text()
            wrong = [problem for problem in (full_marks(local_out, args.copies), full_marks(slurm_out, args.copies))
                     if problem]
            ratio = (on_slurm - startup) / local
            print(f"  pair {pair + 1}: --jobs {args.tasks} {local:.1f} s; --slurm {on_slurm:.1f} s = scheduler start-up "
                  f"{startup:.1f} s + {on_slurm - startup:.1f} s ({ratio:.2f} x local); grades.csv "
                  f"{'identical' if same else 'DIFFERENT'}{'; NOT COUNTED: ' + '; '.join(wrong) if wrong else ''}",
                  flush=True)
            if not wrong:  # a run whose checks failed (a machine too loaded for the time limits) times other work
                ratios.append(ratio)
        if not ratios:
            raise SystemExit("no pair graded every copy of the solutions at 100%")
        median = statistics.median(ratios)
        print(f"median (Slurm less its start-up) / local: {median:.2f} (target <= 1.15: {'met' if median <= 1.15 else 'NOT met'})")


if __name__ == "__main__":
    main()
