"""The class page an instructor reads, rendered in headless Chromium for a class of ten.

The class is graded once (exercises 02 and 03, on the practice model) by ``mechgrade grade-all``,
from copies of the reference solutions with the mistakes tests/test_exercise_mistakes.py already
has, and from the untouched stubs. The page has no script of its own: a harness script, placed
before the page's CSP meta, measures the laid-out page on ``load`` and writes ``#harness-result``;
the test waits for that element, never for a time budget.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMIUM, render
from pristine import stub_source
from test_exercise_mistakes import MISTAKES, TOPICS, build_submission

REPO = Path(__file__).resolve().parent.parent
GRADED = {"02": TOPICS["02"], "03": TOPICS["03"]}
BY_ID = {mistake.id: mistake for mistake in MISTAKES}

# Each student: the mistakes of test_exercise_mistakes.py written into a copy of the solutions, and
# the exercises left as stubs.
CLASS: dict[str, dict[str, Any]] = {
    "ada": {}, "bo": {}, "cy": {},
    "dee": {"mistakes": ["03-pattern-transposed"]},
    "eve": {"mistakes": ["03-pattern-transposed"]},
    "fay": {"mistakes": ["03-token-index-exact-match"]},
    "gus": {"mistakes": ["03-token-index-exact-match", "03-pattern-transposed"]},
    "hal": {"stubs": ["02", "03"]},
    "ivy": {"stubs": ["03"]},
    "jo": {"mistakes": ["02-bos-dropped", "02-top-k-logits"]},
}
# The short name each mistake has in its check file (the hint is what the student reads). The
# token_index bug fails its own check and is noted by eight checks that call token_index: one row.
NAMES = {
    "03-pattern-transposed": "transposed pattern",
    "03-token-index-exact-match": "token_index misses GPT-2's leading space",
    "02-bos-dropped": "BOS token dropped",
    "02-top-k-logits": "logits taken for probabilities",
}

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="isolated grading needs Linux"),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"),
]


def write_student(folder: Path, plan: dict[str, Any]) -> None:
    mistakes = map(BY_ID.__getitem__, plan.get("mistakes", []))
    build_submission(folder, {(mistake.exercise, mistake.function): mistake.source for mistake in mistakes})
    for exercise in plan.get("stubs", []):
        (folder / exercise / f"{TOPICS[exercise]}.py").write_text(stub_source(exercise, TOPICS[exercise]))


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The class, graded once for every test here; the gradebook's folder."""
    root = tmp_path_factory.mktemp("class-of-ten")
    for name, plan in CLASS.items():
        write_student(root / "submissions" / name, plan)
    out = root / "graded"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    exercises = [arg for ex in GRADED for arg in ("--exercise", ex)]
    run = subprocess.run([sys.executable, "-m", "grader", "grade-all", str(root / "submissions"), "--out", str(out),
                          "--jobs", "2", "--model", "toy-gpt2", "--check-timeout", "60", *exercises],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def rows(graded: Path) -> dict[str, dict[str, str]]:
    with open(graded / "grades.csv", newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


# Runs before the page's CSP meta is parsed, so it is allowed: it measures the page on load and
# writes #harness-result, the element the test waits for.
HARNESS = """<script>
window.__errors = [];
addEventListener("error", e => __errors.push("error: " + (e.message || e.target.outerHTML)), true);
document.addEventListener("securitypolicyviolation", e => __errors.push("csp: " + e.violatedDirective));
addEventListener("load", () => {
  const box = e => e.getBoundingClientRect();
  const text = (row, selector) => row.querySelector(selector).textContent.trim();
  const out = document.createElement("div");
  out.id = "harness-result";
  out.textContent = JSON.stringify({
    errors: __errors,
    pageWidth: document.documentElement.scrollWidth,
    viewport: innerWidth,
    columns: Array.from(document.querySelectorAll(".histogram .column")).map(column => {
      const fill = column.querySelector(".fill");
      return {count: Number(column.dataset.count), shown: text(column, ".count"), height: box(column).height,
              width: box(column).width, drawn: fill ? box(fill).height : 0};
    }),
    labels: Array.from(document.querySelectorAll(".labels div")).map(label => {
      const b = box(label);
      return {left: b.left, right: b.right, overflows: label.scrollWidth > label.clientWidth};
    }),
    misconceptions: Array.from(document.querySelectorAll("tr.misconception")).map(row => ({
      name: text(row, ".mistake"), students: Number(text(row, ".count")),
      checks: row.querySelectorAll("details li").length, checksOpen: row.querySelector("details").open})),
    unnamed: Array.from(document.querySelectorAll("tr.unnamed")).map(row => row.textContent),
    leftAlone: Array.from(document.querySelectorAll("tr.exercise.left-alone")).map(row => row.id),
  });
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def rendered(graded: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], dict[str, Any]]:
    """What the harness measured on the page at a window width (each width rendered once)."""
    done: dict[int, dict[str, Any]] = {}

    def at(width: int) -> dict[str, Any]:
        if width not in done:
            page = (graded / "class.html").read_text(encoding="utf-8")
            harness = graded / f"harness-{width}.html"  # beside class.html, as the page's links expect
            harness.write_text(page.replace("<head>", "<head>\n" + HARNESS, 1), encoding="utf-8")
            result = render(harness, "harness-result", tmp_path_factory.mktemp("profile"), width=width,
                            phone=width < 500)
            # The page has no script and the harness logs nothing: any console line is a fault.
            assert result.console == [] and result.result["errors"] == [], (result.console, result.result["errors"])
            done[width] = result.result
        return done[width]

    return at


def bands(rows: dict[str, dict[str, str]]) -> list[int]:
    """The graded submissions per 10% band of the score, from grades.csv."""
    counts = [0] * 10
    for row in rows.values():
        if not row["grading_status"].startswith("not graded"):
            counts[min(int(float(row["percent_correct"]) // 10), 9)] += 1
    return counts


def test_the_class_is_graded_as_planned(rows) -> None:
    assert set(rows) == set(CLASS)
    assert all(row["grading_status"] == "completed" for row in rows.values()), rows
    full = rows["ada"]["possible"]
    assert {rows[name]["total"] for name in ("ada", "bo", "cy")} == {full}
    assert rows["hal"]["total"] == "0"


@pytest.mark.parametrize("width", [1280, 375])
def test_the_histogram_draws_bars_proportional_to_the_counts(rendered, rows, width: int) -> None:
    page = rendered(width)
    assert page["viewport"] == width
    columns = page["columns"]
    assert [c["count"] for c in columns] == bands(rows) and sum(bands(rows)) == len(CLASS)
    assert [c["shown"] for c in columns] == [str(c["count"]) for c in columns]  # the number on each bar
    tallest = max(c["count"] for c in columns)
    for column in columns:
        # 1 px for rounding: a bar is its share of the tallest count, of the column's height
        assert abs(column["drawn"] - column["height"] * column["count"] / tallest) <= 1, columns
    assert max(c["drawn"] for c in columns) >= 100  # the tallest bar is tall enough to read
    assert min(c["width"] for c in columns) >= 20
    # Readable at this width: the page does not scroll sideways and the band labels neither overflow
    # their boxes nor run into each other.
    assert page["pageWidth"] <= width, f"the page is {page['pageWidth']} px wide at {width} px"
    labels = page["labels"]
    assert len(labels) == 10 and not any(label["overflows"] for label in labels), labels
    assert all(a["right"] <= b["left"] for a, b in zip(labels, labels[1:])), labels


def test_each_misconception_appears_once_with_its_count(rendered) -> None:
    page = rendered(1280)
    want = Counter(NAMES[mistake] for plan in CLASS.values() for mistake in plan.get("mistakes", []))
    names = [row["name"] for row in page["misconceptions"]]
    assert Counter(names) == Counter(set(names)), f"a misconception has more than one row: {names}"
    assert {row["name"]: row["students"] for row in page["misconceptions"]} == dict(want)
    counts = [row["students"] for row in page["misconceptions"]]
    assert counts == sorted(counts, reverse=True)  # most common first
    # The token_index bug touched its own check and the checks that call token_index, collapsed.
    root = next(row for row in page["misconceptions"] if row["name"] == NAMES["03-token-index-exact-match"])
    assert root["checks"] > 1 and not root["checksOpen"]
    # Its dependent failures are counted under it, not again as failures of their own.
    assert not [row for row in page["unnamed"] if "fix token_index first" in row or "token_index finds the word" in row]


def test_the_exercise_most_left_unattempted_is_named(graded, rendered) -> None:
    page = rendered(1280)
    left = Counter(ex for plan in CLASS.values() for ex in plan.get("stubs", []))
    most, _ = left.most_common(1)[0]
    assert page["leftAlone"] == [f"exercise-{most}"]
    html = (graded / "class.html").read_text(encoding="utf-8")
    assert f"Most left unattempted: <strong>exercise {most}</strong>, by {left[most]} of {len(CLASS)}" in html
