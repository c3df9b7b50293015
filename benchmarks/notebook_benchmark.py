"""How long ``check("NN")`` takes in a notebook, against the checks' own time.

A student runs the last cell of a notebook as often as they like; after the first run it should
cost about what the checks cost, not an import and a model load. This prints, for one exercise:

- the checks' own time in ``pytest exercises/NN --solutions`` (a fresh process; the span from the
  model loaded to the last check done, from the plugin's MECHGRADE_TIMINGS stamps);
- in a real ipykernel (nbclient), the notebook with the reference solutions in its cells: the
  setup cell (imports and the model load), then the wall time of the first and of the second
  ``check("NN")``, each from the call to the score table and the report shown;
- the ratio second check / checks' own time.

    python benchmarks/notebook_benchmark.py [--exercise 03] [--model toy-gpt2] [--gpt2-shaped]
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
sys.path.insert(0, str(REPO))

TIMING_CELL = '''
import json, time
from grader import check
started = time.perf_counter(); check("{exercise}"); first = time.perf_counter() - started
started = time.perf_counter(); check("{exercise}"); second = time.perf_counter() - started
import grader.notebooks.check
checks = sum(t.duration for e in grader.notebooks.check.last_run.exercises for t in e.tests)
print("TIMES", json.dumps({{"first": first, "second": second, "in_check_tests": checks,
                           "points": grader.notebooks.check.last_run.points, "max": grader.notebooks.check.last_run.max_points}}))
'''


def checks_in_pytest(exercise: str, model: str, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as work:
        stamps = Path(work) / "timings.json"
        subprocess.run([sys.executable, "-m", "pytest", f"exercises/{exercise}", "--solutions", "--model", model,
                        "-q", "-p", "no:cacheprovider", "--report-html", ""],
                       cwd=REPO, env={**env, "MECHGRADE_TIMINGS": str(stamps)}, check=False, capture_output=True)
        times = json.loads(stamps.read_text())
    return times["checks_end"] - times["load_end"]


def in_kernel(exercise: str, env: dict[str, str]) -> dict[str, float]:
    import nbclient
    import nbformat

    from grader.notebooks.build import build_notebook, exercise_stub

    folder = REPO / "exercises" / exercise
    solution = REPO / "solutions" / exercise / exercise_stub(folder).name
    notebook = build_notebook(exercise, (folder / "README.md").read_text(), solution.read_text())
    notebook["cells"][-1]["source"] = TIMING_CELL.format(exercise=exercise)
    setup = notebook["cells"][2]
    setup["source"] = "import time\n_started = time.perf_counter()\n" + "".join(setup["source"]) + \
        '\nprint("SETUP", time.perf_counter() - _started)'
    node = nbformat.reads(json.dumps(notebook), as_version=4)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        nbclient.NotebookClient(node, timeout=1800, kernel_name="python3",
                                resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out: dict[str, float] = {}
    for cell in node["cells"]:
        for output in cell.get("outputs", []):
            for line in output.get("text", "").splitlines():
                if line.startswith("SETUP "):
                    out["setup"] = float(line.split()[1])
                if line.startswith("TIMES "):
                    out.update(json.loads(line.removeprefix("TIMES ")))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exercise", default="03")
    parser.add_argument("--model", default="toy-gpt2")
    parser.add_argument("--gpt2-shaped", action="store_true", help="GPT-2 small's shape, random weights (see grading_benchmark.py)")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    model = args.model
    with tempfile.TemporaryDirectory() as work:
        if args.gpt2_shaped:
            from grading_benchmark import build_gpt2_shaped  # type: ignore[import-not-found]

            model = str(build_gpt2_shaped(Path(work) / "gpt2-shaped"))
        env["MECHGRADE_MODEL"] = model
        started = time.perf_counter()
        checks = checks_in_pytest(args.exercise, model, env)
        kernel = in_kernel(args.exercise, env)
        label = "GPT-2-small-shaped" if args.gpt2_shaped else model
        print(f"exercise {args.exercise} on {label} ({os.cpu_count()} CPUs), {time.perf_counter() - started:.0f} s in all")
        print(f"  checks' own time in pytest exercises/{args.exercise}: {checks:6.2f} s")
        print(f"  notebook setup cell (imports, model load):   {kernel['setup']:6.2f} s")
        print(f"  first check(\"{args.exercise}\"):                         {kernel['first']:6.2f} s")
        print(f"  second check(\"{args.exercise}\"):                        {kernel['second']:6.2f} s"
              f"  ({kernel['second'] / checks:.2f} x the checks' own time; its tests took {kernel['in_check_tests']:.2f} s)")
        print(f"  score: {kernel['points']:g} / {kernel['max']:g}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
