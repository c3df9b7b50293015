"""`mechgrade grade`: a submission that defeats the per-check time limit still gets a results.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Swallows the grader's timeout (a BaseException) and goes on forever: only the total limit helps.
UNSTOPPABLE = '''

def count_cached(cache):
    import time
    while True:
        try:
            time.sleep(0.2)
        except BaseException:
            pass
'''


def test_a_run_stopped_by_the_total_timeout_keeps_the_checks_already_graded(tmp_path: Path) -> None:
    submission = tmp_path / "submission"
    shutil.copytree(REPO / "solutions", submission)
    with (submission / "02" / "cache.py").open("a") as module:
        module.write(UNSTOPPABLE)  # replaces the reference count_cached
    results = tmp_path / "results.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTEST_ADDOPTS": f"--basetemp={tmp_path / 'basetemp'}"}
    completed = subprocess.run(
        [sys.executable, "-m", "grader", "grade", "--model", "toy-gpt2", "--exercise", "02",
         "--submission", str(submission), "--gradescope-json", str(results), "--report-html", "",
         "--check-timeout", "2", "--total-timeout", "40"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 124
    assert "grading was stopped after 40 s" in completed.stderr
    document = json.loads(results.read_text())
    assert document["output"].startswith("grading was stopped after 40 s; checks that had not finished score 0.")
    by_name = {t["name"]: t for t in document["tests"]}
    graded_first = [t for name, t in by_name.items() if "run_with_cache returns" in name]
    assert graded_first and all(t["score"] == t["max_score"] > 0 for t in graded_first)
    stuck = next(t for name, t in by_name.items() if "count_cached" in name)
    assert stuck["score"] == 0
