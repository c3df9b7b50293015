"""How fast `mechgrade grade-all` grades a class, against the checks' own time.

The class: COPIES copies of the reference solutions plus a few hostile submissions from
tests/test_adversarial_submissions.py (os._exit, sys.exit, a str that equals everything, a
submission that patches the grader, one that looks for the grading session in memory). Printed:

- the floor's work: a plain script that makes the calls the solutions make, with no grader, minus
  its imports and model load (benchmarks/grading_benchmark.py measures it; the median of
  --floor-runs runs): the checks' own time;
- `grade-all --jobs 1`: start-up (process start, imports, the model load, up to the first
  result, less one submission's share) and the marginal cost per submission: the time from the
  first result to the last, divided by the submissions after the first (target <= 1.5 x the floor's work);
  and the median time of a copy of the solutions and of a hostile submission, apart;
- `grade-all --jobs 2`: its total against --jobs 1 (target: at least 1.6 x faster).

    python benchmarks/class_benchmark.py [--copies 40] [--jobs 2] [--gpt2-shaped [--gpt2-copies 8] [--skip-toy]]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

HOSTILE = ("os-exit-0-in-a-function", "sys-exit-in-a-function", "always-equal-str",
           "patches-grader-scoring-and-reports", "reference-from-the-grading-session-in-memory")


def make_class(folder: Path, copies: int, out: Path) -> int:
    import shutil

    import test_adversarial_submissions as adversarial

    for i in range(copies):
        shutil.copytree(REPO / "solutions", folder / f"student-{i:03d}", ignore=shutil.ignore_patterns("__pycache__"))
    cases = {case.id: case for case in adversarial.CASES}
    for name in HOSTILE:
        case = cases[name]
        placeholders = {"__OUT__": str(out / name), "__MARKER__": f"bench-{name}", "__REPO__": str(REPO),
                        "__GUARDED__": repr(list(adversarial.GUARDED_FILES))}
        adversarial.build_submission(case, folder / f"hostile-{name}", placeholders)
    return copies + len(HOSTILE)


def grade_all(submissions: Path, out: Path, jobs: int, model: str, fixtures: Path | None) -> dict[str, float]:
    timings = out.parent / f"timings-{out.name}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MECHGRADE_CLASS_TIMINGS": str(timings),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "grader", "grade-all", str(submissions), "--out", str(out), "--jobs", str(jobs),
               "--model", model, *(["--fixtures-dir", str(fixtures)] if fixtures else []),
               *([] if os.geteuid() == 0 else ["--trust-submissions"])]  # the course's own submissions
    started = time.time()
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.time() - started
    if run.returncode != 0:
        sys.stderr.write(run.stdout[-3000:] + run.stderr[-3000:])
        raise SystemExit(f"grade-all failed: {' '.join(command)}")
    stamps = json.loads(timings.read_text())
    marginal = (stamps["finished"] - stamps["first_done"]) / max(stamps["graded"] - 1, 1)
    return {"wall": wall, "graded": stamps["graded"], "marginal": marginal,
            "startup": stamps["first_done"] - started - marginal, **per_kind(out)}


def per_kind(out: Path) -> dict[str, float]:
    """The median time one copy of the solutions took, and one hostile submission (with --jobs 1:
    the time from the previous submission's results.json to its own; the first one is left out)."""
    import statistics

    filed = sorted((path.stat().st_mtime, path.parent.name) for path in out.glob("*/results.json"))
    took = [(name, now - before) for (before, _), (now, name) in zip(filed, filed[1:])]
    kinds = {"solutions": [t for name, t in took if name.startswith("student-")],
             "hostile": [t for name, t in took if name.startswith("hostile-")]}
    return {kind: statistics.median(times) if times else float("nan") for kind, times in kinds.items()}


def median_floor(single, model: str, runs: int) -> dict[str, float]:
    """The floor's run with the median work of `runs` runs: on a shared 2-core machine one run's
    work varied from 1.9 to 3.2 s on toy-gpt2 (its SAE training, most of it, varies most)."""
    measured = sorted((single.floor(model, "cpu") for _ in range(runs)), key=lambda floor: floor["work"])
    works = ", ".join(f"{floor['work']:.1f}" for floor in measured)
    print(f"  (floor work over {runs} runs: {works} s; the median is used)", flush=True)
    return measured[len(measured) // 2]


def check_scores(out: Path, copies: int, full: bool) -> None:
    """Every copy of the solutions got the same score: 100% where `full` (on random weights one
    reference check fails by nature; see benchmarks/grading_benchmark.py)."""
    import csv

    with open(out / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    scores = {r["percent_correct"] for r in rows if r["file"].startswith("student-")}
    count = sum(r["file"].startswith("student-") for r in rows)
    if count != copies or len(scores) != 1 or (full and scores != {"100"}):
        raise SystemExit(f"the copies of the solutions scored {sorted(scores)} in {out}/grades.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--gpt2-shaped", action="store_true", help="also the GPT-2-small-shaped model (slow)")
    parser.add_argument("--gpt2-copies", type=int, default=8)
    parser.add_argument("--skip-toy", action="store_true", help="only the GPT-2-small-shaped model")
    parser.add_argument("--floor-runs", type=int, default=3, help="the floor's runs, of which the median counts")
    args = parser.parse_args()
    import grading_benchmark as single

    models = [] if args.skip_toy else [("toy-gpt2", "toy-gpt2", args.copies, None)]
    with tempfile.TemporaryDirectory(prefix="mechgrade-class-bench-") as tmp:
        work = Path(tmp)
        if args.gpt2_shaped:
            shaped = single.build_gpt2_shaped(work / "gpt2-shaped")
            fixtures = work / "fixtures"
            single.refresh(str(shaped), "cpu", fixtures)
            models.append(("GPT-2-small-shaped, random weights", str(shaped), args.gpt2_copies, fixtures))
        for label, model, copies, fixtures in models:
            floor = median_floor(single, model if fixtures else "toy-gpt2", args.floor_runs)
            folder = work / f"class-{len(label)}"
            count = make_class(folder, copies, work / "hostile-out")
            one = grade_all(folder, work / f"out-{len(label)}-1", 1, model, fixtures)
            check_scores(work / f"out-{len(label)}-1", copies, full=fixtures is None)
            many = grade_all(folder, work / f"out-{len(label)}-{args.jobs}", args.jobs, model, fixtures)
            ratio = one["marginal"] / floor["work"]
            speedup = one["wall"] / many["wall"]
            print(f"\n{label}: {count} submissions ({copies} copies of the solutions + {len(HOSTILE)} hostile), "
                  f"{os.cpu_count()} CPUs")
            print(f"  floor: {floor['wall']:.1f} s = start-up {floor['startup']:.1f} + load {floor['load']:.1f} + "
                  f"work {floor['work']:.1f} (the checks' own time)")
            print(f"  grade-all --jobs 1: {one['wall']:.1f} s = start-up {one['startup']:.1f} + "
                  f"{one['graded']:g} x {one['marginal']:.2f} s per submission")
            print(f"    marginal / floor work: {ratio:.2f} (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")
            print(f"    median per submission: a copy of the solutions {one['solutions']:.2f} s "
                  f"({one['solutions'] / floor['work']:.2f} x the floor's work), a hostile one {one['hostile']:.2f} s")
            print(f"  grade-all --jobs {args.jobs}: {many['wall']:.1f} s = start-up {many['startup']:.1f} + "
                  f"{many['graded']:g} x {many['marginal']:.2f} s (wall per submission, {args.jobs} at once)")
            print(f"    --jobs 1 / --jobs {args.jobs}: {speedup:.2f} x faster (target >= 1.6: "
                  f"{'met' if speedup >= 1.6 else 'NOT met'})")


if __name__ == "__main__":
    main()
