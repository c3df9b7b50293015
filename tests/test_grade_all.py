"""`mechgrade grade-all` and `mechgrade merge-results`: a small class, graded as an instructor would.

The class (exercises 02 and 03 only, on the practice model, two grading processes):
- ``solutions/``: the reference solutions, laid out like exercises/ (full marks);
- ``stubs.zip``: the untouched stubs inside one wrapping folder, as zip tools make them (not attempted);
- ``wrong/``: flat files whose attention_pattern returns the pattern transposed;
- ``dave_attention.py`` and ``dave_cache.py``: loose files (an LMS export) with the same mistake;
- ``hostile/``: plot_attention calls os._exit(0), which ends its worker;
- bad input: an empty folder, a zip whose module is nested too deep, a notebook that is not JSON,
  and a folder where two files claim exercise 03.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from class_runs import FULL, REPO, TOTAL, TOPICS, TRUST, mechgrade, solution, write
from pristine import write_stubs

from grader.classroom.identity import folder_name

DAVE = "dave_attention.py, dave_cache.py"  # loose files: one submission, named by its files
TRANSPOSED = "the pattern is transposed: it must be [query, key], as stored in the cache"
ATTENTION_PATTERN_POINTS = 3 + 3 + 3  # two parametrized checks and the hidden one
PLOT_ATTENTION_POINTS = 4

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="isolated grading needs Linux")


def with_function(source: str, replacement: str) -> str:
    """`source` with a function redefined at its end (the last definition wins)."""
    return source + "\n\n" + replacement.strip() + "\n"


WRONG_ATTENTION = with_function(solution("03"), '''
def attention_pattern(cache, layer, head):
    return cache["pattern", layer][0, head].T
''')
HOSTILE_ATTENTION = with_function(solution("03"), '''
def plot_attention(pattern, str_tokens, title=None):
    import os
    os._exit(0)
''')


def make_class(root: Path) -> Path:
    for exercise, topic in TOPICS.items():
        write(root / "solutions" / exercise / f"{topic}.py", solution(exercise))
        write(root / "hostile" / exercise / f"{topic}.py", HOSTILE_ATTENTION if exercise == "03" else solution(exercise))
        write(root / "wrong" / f"{topic}.py", WRONG_ATTENTION if exercise == "03" else solution(exercise))
        write(root / f"dave_{topic}.py", WRONG_ATTENTION if exercise == "03" else solution(exercise))
    stubs = write_stubs(root.parent / "stubs-src" / "my-work", TOPICS)
    with zipfile.ZipFile(root / "stubs.zip", "w") as bundle:
        for file in stubs.rglob("*.py"):
            bundle.write(file, file.relative_to(stubs.parent))
    (root / "empty").mkdir()
    with zipfile.ZipFile(root / "nested.zip", "w") as bundle:
        bundle.writestr("nested/deep/deeper/still/attention.py", solution("03"))
        bundle.writestr("nested/deep/README.txt", "my work")
    write(root / "broken.ipynb", '{"cells": [ this is not json')
    write(root / "twice" / "02" / "cache.py", solution("02"))
    write(root / "twice" / "03" / "attention.py", solution("03"))
    write(root / "twice" / "attention.py", WRONG_ATTENTION)
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("class")
    submissions = make_class(root / "submissions")
    out = root / "graded"
    run = mechgrade("grade-all", str(submissions), "--out", str(out), "--jobs", "2", "--model", "toy-gpt2",
                    "--exercise", "02", "--exercise", "03", "--check-timeout", "30")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out, run


@pytest.fixture(scope="module")
def rows(graded: tuple[Path, subprocess.CompletedProcess[str]]) -> dict[str, dict[str, str]]:
    return {row["file"]: row for row in read_csv(graded[0] / "grades.csv")}


def test_the_gradebook_has_otters_columns_and_one_row_per_submission(graded, rows) -> None:
    out, _ = graded
    with open(out / "grades.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["file", "02", "03", "total", "possible", "percent_correct", "grading_status", "report"]
    assert set(rows) == {"solutions", "stubs.zip", "wrong", DAVE, "hostile", "empty", "nested.zip", "broken.ipynb",
                         "twice"}  # each entry's exact name
    assert {name: row["possible"] for name, row in rows.items()} == {name: str(TOTAL) for name in rows}


def test_points_per_exercise_follow_each_submission(rows) -> None:
    def points(name: str) -> tuple[float, float, float]:
        return float(rows[name]["02"]), float(rows[name]["03"]), float(rows[name]["total"])

    assert points("solutions") == (FULL["02"], FULL["03"], TOTAL) and rows["solutions"]["percent_correct"] == "100"
    assert points("stubs.zip") == (0, 0, 0)  # not attempted
    transposed = FULL["03"] - ATTENTION_PATTERN_POINTS
    assert points("wrong") == (FULL["02"], transposed, FULL["02"] + transposed)
    assert points(DAVE) == points("wrong")  # loose files, the same work
    assert points("hostile") == (FULL["02"], FULL["03"] - PLOT_ATTENTION_POINTS, TOTAL - PLOT_ATTENTION_POINTS)  # os._exit costs its check
    for graded_cleanly in ("solutions", "stubs.zip", "wrong", DAVE, "hostile"):
        assert rows[graded_cleanly]["grading_status"] == "completed", rows[graded_cleanly]


def test_bad_input_gets_a_clear_line_in_the_gradebook(rows) -> None:
    status = {name.split(".")[0]: rows[name]["grading_status"] for name in ("empty", "nested.zip", "broken.ipynb", "twice")}
    assert status["empty"].startswith("not graded: empty: no exercise module found"), status
    assert "nested/deep/deeper/still/attention.py is nested too deep" in status["nested"], status
    assert status["broken"].startswith("not graded: not a valid notebook: broken.ipynb"), status
    assert "exercise 03: 2 files claim it (03/attention.py, attention.py); neither was graded" in status["twice"], status
    assert status["twice"].startswith("completed with problems"), status
    assert (float(rows["twice"]["02"]), float(rows["twice"]["03"])) == (FULL["02"], 0)  # exercise 02 is still graded
    for name in ("empty", "nested.zip", "broken.ipynb"):
        assert rows[name]["total"] == "0"


def test_each_student_has_a_report_and_results_json(graded, rows) -> None:
    out, _ = graded
    for name, row in rows.items():
        results = json.loads((out / folder_name(name) / "results.json").read_text())
        assert results["extra_data"]["mechgrade"]["submission"] == name
        if row["grading_status"].startswith("not graded"):
            assert row["report"] == ""
        else:
            assert row["report"] == f"{folder_name(name)}/report.html" and (out / row["report"]).is_file()
    hostile = json.loads((out / folder_name("hostile") / "results.json").read_text())
    plot = [t for t in hostile["tests"] if "plot_attention" in t["name"]]
    assert plot and "exited with status 0" in plot[0]["output"]


def test_the_class_page_ranks_the_mistakes_and_links_every_report(graded, rows) -> None:
    out, _ = graded
    page = (out / "class.html").read_text()
    assert "<script" not in page and "Content-Security-Policy" in page
    graded_count = sum(1 for r in rows.values() if not r["grading_status"].startswith("not graded"))
    # wrong/ and dave (and twice/'s losing file is not graded): the transposed pattern, in each of
    # the two parametrized checks, is one misconception of two students
    mistakes = page[page.index('id="misconceptions"'):page.index('id="exercises"')]
    assert mistakes.count('<strong class="mistake">transposed pattern</strong>') == 1, mistakes
    first = mistakes.index('<strong class="mistake">transposed pattern</strong>')
    row = mistakes[first:].split("</tr>")[0]
    assert f'<span class="count">2</span> of {graded_count}' in row and TRANSPOSED in row, row
    for name, row in rows.items():
        if row["report"]:
            assert f'href="{row["report"]}"' in page
    assert 'id="distribution"' in page and 'id="checks"' in page


def test_merge_results_gives_the_same_gradebook(graded, tmp_path: Path) -> None:
    out, _ = graded
    merged = tmp_path / "merged"
    run = mechgrade("merge-results", str(out), "--out", str(merged))
    assert run.returncode == 0, run.stderr
    expected = sorted(read_csv(out / "grades.csv"), key=lambda r: r["file"])
    got = sorted(read_csv(merged / "grades.csv"), key=lambda r: r["file"])
    assert [{k: v for k, v in r.items() if k != "report"} for r in got] == \
           [{k: v for k, v in r.items() if k != "report"} for r in expected]
    for row in got:  # report links are relative to the merged gradebook, and lead to the reports
        if row["report"]:
            assert (merged / row["report"]).resolve() == (out / folder_name(row["file"]) / "report.html").resolve()
    assert "the pattern is transposed" in (merged / "class.html").read_text()


def test_merge_results_takes_files_named_after_students(graded, tmp_path: Path) -> None:
    out, _ = graded
    for name in ("solutions", "wrong"):
        shutil.copy(out / folder_name(name) / "results.json", tmp_path / f"{name}.json")
    write(tmp_path / "garbled.json", "{ not json")
    run = mechgrade("merge-results", str(tmp_path / "solutions.json"), str(tmp_path / "wrong.json"),
                    str(tmp_path / "garbled.json"), "--out", str(tmp_path / "book"))
    assert run.returncode == 0, run.stderr
    rows = {r["file"]: r for r in read_csv(tmp_path / "book" / "grades.csv")}
    assert rows["solutions"]["total"] == str(TOTAL) and rows["wrong"]["03"] == str(int(FULL["03"] - ATTENTION_PATTERN_POINTS))
    assert rows["garbled"]["grading_status"].startswith("failed: unreadable results.json")


def test_a_stopped_run_resumes_with_only_what_is_missing(tmp_path: Path) -> None:
    submissions = tmp_path / "submissions"
    for name in ("ann", "ben", "cat"):
        write(submissions / name / "03" / "attention.py", solution("03"))
    out = tmp_path / "graded"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "grader", "grade-all", str(submissions), "--out", str(out), "--model", "toy-gpt2",
               "--exercise", "03", "--jobs", "1", *TRUST]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / folder_name("ann") / "results.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # no chance to tidy up
    process.wait()
    done = {name for name in ("ann", "ben", "cat") if (out / folder_name(name) / "results.json").exists()}
    assert "ann" in done and len(done) < 3, done
    for name in done:  # a folder is there only once its results are whole
        assert json.loads((out / folder_name(name) / "results.json").read_text())["score"] == FULL["03"]
    first = {name: (out / folder_name(name) / "results.json").stat().st_ino for name in done}

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(done)} of 3 submissions already graded" in rerun.stderr
    assert {name: (out / folder_name(name) / "results.json").stat().st_ino for name in done} == first  # not graded again
    assert [(r["file"], r["total"]) for r in read_csv(out / "grades.csv")] == [(name, str(int(FULL["03"]))) for name in ("ann", "ben", "cat")]
    assert not (out / ".staging").exists()
