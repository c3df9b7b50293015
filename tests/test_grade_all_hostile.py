"""`mechgrade grade-all` on a hostile class: no student is ever given another's work or grade.

One class, graded once (exercises 02 and 03, on the practice model), then once more after an entry
was added, one removed and one renamed:
- ``Zoë`` twice (NFC and NFD: one name to the eye, two entries), ``dan smith.zip`` and ``dan_smith/``:
  names that clean alike, each with different work;
- ``eve/work`` a link to Zoë's folder, ``mallory`` a link to the project's solutions/, ``oscar/03``'s
  module a link to the reference solution;
- FIFOs named like a module, a notebook and a zip; a notebook nested 100,000 deep; a zip of 15,000
  nested entries;
- a notebook with a UTF-8 byte-order mark (graded as `grade --submission` grades it);
- names a spreadsheet would run as formulas;
- two students, graded one after the other, the first leaving a file in /tmp and /dev/shm that the
  second looks for.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
from class_runs import FULL, REPO, mechgrade, solution, write

from grader.classroom.identity import folder_name

NFC, NFD = "Zo\u00eb", "Zoe\u0308"
FORMULAS = ["=HYPERLINK(\"evil.example\",\"y\")", "-1-1", "+1+1", "@SUM(1)"]
TOKEN = uuid.uuid4().hex
LEFT_BEHIND = [Path("/tmp") / f"mechgrade-test-{TOKEN}", Path("/dev/shm") / f"mechgrade-test-{TOKEN}"]
LINK = "is a symbolic link (links are not followed); skipped"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="isolated grading needs Linux")


def make_class(root: Path) -> Path:
    write(root / NFC / "02" / "cache.py", solution("02"))
    write(root / NFD / "03" / "attention.py", solution("03"))
    write(root / "dan_smith" / "cache.py", solution("02"))
    with zipfile.ZipFile(root / "dan smith.zip", "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("dan smith/03/attention.py", solution("03"))
        bundle.writestr("dan smith/junk.bin", b"\0" * 2**20)  # never copied: only modules are staged
    (root / "eve").mkdir()
    os.symlink(f"../{NFC}", root / "eve" / "work")
    os.symlink(REPO / "solutions", root / "mallory")
    write(root / "oscar" / "02" / "cache.py", solution("02"))
    (root / "oscar" / "03").mkdir()
    os.symlink(REPO / "solutions" / "03" / "attention.py", root / "oscar" / "03" / "attention.py")
    for fifo in ("frank_cache.py", "grace.ipynb", "heidi.zip"):
        os.mkfifo(root / fifo)
    write(root / "deep.ipynb", "[" * 100_000 + "]" * 100_000)
    with zipfile.ZipFile(root / "many.zip", "w") as bundle:
        for i in range(15_000):
            bundle.writestr(f"many/deep/{i}/x/attention.py", "")
    notebook = {"cells": [{"cell_type": "code", "source": solution("02"), "metadata": {}, "outputs": []}],
                "nbformat": 4, "nbformat_minor": 5, "metadata": {}}
    write(root / "bom.ipynb", b"\xef\xbb\xbf" + json.dumps(notebook).encode())
    for name in [*FORMULAS, "a_b"]:
        (root / name).mkdir()
    writes = "".join(f"open({str(p)!r}, 'w').write('answers')\n" for p in LEFT_BEHIND)
    write(root / "leak-a-writer" / "02" / "cache.py", solution("02") + f"\n{writes}")
    looks = f"import os\nif any(os.path.exists(p) for p in {[str(p) for p in LEFT_BEHIND]!r}):\n" \
            "    raise RuntimeError('found what another student left')\n"
    write(root / "leak-b-reader" / "02" / "cache.py", solution("02") + f"\n{looks}")
    return root


def read_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="", encoding="utf-8") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("hostile")
    klass = make_class(root / "class")
    out = root / "graded"
    run = mechgrade("grade-all", str(klass), "--out", str(out), "--jobs", "1", "--model", "toy-gpt2",
                    "--exercise", "02", "--exercise", "03", "--check-timeout", "30")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return klass, out, read_rows(out)


@pytest.fixture(scope="module")
def regraded(graded) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """The same class graded again after `a b.ipynb` was added, `-1-1` removed and `+1+1` renamed
    `+2+2`: (the results.json inodes before, the rows after)."""
    klass, out, _ = graded
    before = {p.parent.name: p.stat().st_ino for p in out.glob("*/results.json")}
    write(klass / "a b.ipynb", '{"cells": [ not json')
    (klass / "-1-1").rmdir()
    (klass / "+1+1").rename(klass / "+2+2")
    run = mechgrade("grade-all", str(klass), "--out", str(out), "--jobs", "1", "--model", "toy-gpt2",
                    "--exercise", "02", "--exercise", "03", "--check-timeout", "30")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return before, read_rows(out)


def points(row: dict[str, str]) -> tuple[float, float]:
    return float(row["02"]), float(row["03"])


def test_entries_whose_names_clean_alike_are_graded_apart(graded) -> None:
    _, out, rows = graded
    assert points(rows[NFC]) == (FULL["02"], 0) and points(rows[NFD]) == (0, FULL["03"])
    assert points(rows["dan_smith"]) == (FULL["02"], 0) and points(rows["dan smith.zip"]) == (0, FULL["03"])
    for name in (NFC, NFD, "dan_smith", "dan smith.zip"):
        assert rows[name]["grading_status"] == "completed", rows[name]
        results = json.loads((out / folder_name(name) / "results.json").read_text(encoding="utf-8"))
        assert results["extra_data"]["mechgrade"]["submission"] == name
        assert rows[name]["report"] == f"{folder_name(name)}/report.html"
    page = (out / "class.html").read_text(encoding="utf-8")
    assert NFC in page and NFD in page and "dan smith.zip" in page


def test_links_grade_nobody_elses_work(graded) -> None:
    _, out, rows = graded
    assert rows["eve"]["grading_status"] == f"not graded: eve/work {LINK}" and rows["eve"]["total"] == "0"
    assert rows["mallory"]["grading_status"] == f"not graded: mallory {LINK}" and rows["mallory"]["total"] == "0"
    assert points(rows["oscar"]) == (FULL["02"], 0)  # its own module is graded, the linked one is not
    assert rows["oscar"]["grading_status"] == f"completed with problems: oscar/03/attention.py {LINK}"
    report = (out / folder_name("oscar") / "report.html").read_text(encoding="utf-8")
    assert f"oscar/03/attention.py {LINK}" in report  # the student's own report says what was skipped


def test_special_files_deep_json_and_crowded_zips_are_lines_and_the_batch_goes_on(graded) -> None:
    _, _, rows = graded
    for fifo in ("frank_cache.py", "grace.ipynb", "heidi.zip"):
        assert rows[fifo]["grading_status"] == f"not graded: {fifo} is a FIFO (named pipe); skipped"
    assert rows["deep.ipynb"]["grading_status"] == ("not graded: not a valid notebook: deep.ipynb is not a notebook: "
                                                    "its JSON is nested more than 100 deep")
    assert len(rows["many.zip"]["grading_status"]) < 300
    assert "and 14997 more is nested too deep" in rows["many.zip"]["grading_status"]


def test_a_notebook_with_a_byte_order_mark_is_graded(graded) -> None:
    _, _, rows = graded
    assert points(rows["bom.ipynb"]) == (FULL["02"], 0) and rows["bom.ipynb"]["grading_status"] == "completed"


def test_names_a_spreadsheet_would_run_are_text_in_grades_csv_and_readable_on_the_page(graded) -> None:
    _, out, rows = graded
    for name in FORMULAS:
        assert f"'{name}" in rows and name not in rows
    assert not [cell for row in rows.values() for cell in row.values() if cell.startswith(("=", "+", "-", "@"))]
    page = (out / "class.html").read_text(encoding="utf-8")
    assert "=HYPERLINK(&#34;evil.example&#34;,&#34;y&#34;)" in page and "@SUM(1)" in page


def test_out_holds_results_not_copies_of_submissions(graded) -> None:
    _, out, _ = graded
    kept = {p.name for p in out.rglob("*") if p.is_file()}
    assert kept <= {"results.json", "report.html", "grading.log", "grades.csv", "class.html"}, kept
    assert not (out / ".inputs").exists() and not (out / ".staging").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="workers run as a user of their own only when the grader is root")
def test_nothing_a_students_code_leaves_in_tmp_reaches_the_next_or_outlives_the_batch(graded) -> None:
    _, _, rows = graded
    assert points(rows["leak-a-writer"]) == points(rows["leak-b-reader"]) == (FULL["02"], 0)
    assert rows["leak-b-reader"]["grading_status"] == "completed"
    assert [p for p in LEFT_BEHIND if p.exists()] == []


def test_merge_results_names_every_row_as_grade_all_did(graded, tmp_path: Path) -> None:
    _, out, _ = graded
    run = mechgrade("merge-results", str(out), "--out", str(tmp_path / "merged"))
    assert run.returncode == 0, run.stderr
    merged = read_rows(tmp_path / "merged")
    assert {name: points(row) for name, row in merged.items()} == \
           {name: points(row) for name, row in read_rows(out).items()}


def test_a_rerun_gives_each_entry_its_own_results_and_nobody_elses(graded, regraded) -> None:
    _, out, first = graded
    before, rows = regraded
    assert rows["a b.ipynb"]["grading_status"].startswith("not graded: not a valid notebook: a b.ipynb is not valid JSON")
    assert rows["a_b"] == first["a_b"]
    assert "'-1-1" not in rows and "'+1+1" not in rows and rows["'+2+2"]["grading_status"].startswith("not graded: empty")
    kept = {name for name in first if name not in ("'-1-1", "'+1+1")}
    assert {name: rows[name] for name in kept} == {name: first[name] for name in kept}
    for name in kept - {"'=HYPERLINK(\"evil.example\",\"y\")", "'@SUM(1)"}:  # graded once, never again
        folder = folder_name(name)
        assert (out / folder / "results.json").stat().st_ino == before[folder], name
