"""Finding a class's submissions, without grading them: who each entry is, what staging reads and
what it refuses to read, the limits, one notebook reader, and a gradebook a spreadsheet can open.

Every class folder here is hostile in one way: names that clean to the same slug, links to other
students and to the project's solutions, FIFOs named like submissions, files the student could not
read, deep nesting, zip bombs, names that a spreadsheet would run as formulas.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader import cli
from grader.classroom import inputs
from grader.classroom.gradebook import Gradebook, Row, read_row, spreadsheet_safe
from grader.classroom.identity import folder_name
from grader.classroom.inputs import Submission, find_submissions
from grader.sandbox import landlock
from grader.sandbox.shared_temp import sweep
from grader.student.notebook_cells import MAX_NOTEBOOK_BYTES, NotebookError, read_notebook

REPO = Path(__file__).resolve().parent.parent
TOPICS = {"02": "cache", "03": "attention"}
LINK = "is a symbolic link (links are not followed); skipped"
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: ownership and other users' permissions")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the class is read as Linux reads it")


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def solution(exercise: str) -> str:
    return (REPO / "solutions" / exercise / f"{TOPICS[exercise]}.py").read_text()


def found(klass: Path, tmp_path: Path) -> dict[str, Submission]:
    return {s.identity: s for s in find_submissions(klass, tmp_path / "staging", TOPICS)}


def staged(submission: Submission) -> dict[str, str]:
    """What was staged for grading: {"03/attention.py": its text}."""
    assert submission.path is not None, submission.problems
    return {str(p.relative_to(submission.path)): p.read_text() for p in submission.path.rglob("*.py")}


def notebook(code: str, nbformat: int = 4) -> bytes:
    return json.dumps({"cells": [{"cell_type": "code", "source": code, "metadata": {}, "outputs": []}],
                       "nbformat": nbformat, "nbformat_minor": 5, "metadata": {}}).encode()


# ---- identity ----


def test_entries_whose_names_clean_alike_keep_their_own_name_folder_and_work(tmp_path: Path) -> None:
    klass = tmp_path / "class"
    nfc, nfd = "Zo\u00eb", "Zoe\u0308"  # the same name to the eye, two entries to the file system
    write(klass / nfc / "02" / "cache.py", "# Zoë NFC")
    write(klass / nfd / "03" / "attention.py", "# Zoë NFD")
    write(klass / "Zo\u00e9" / "attention.py", "# Zoé")
    write(klass / "dan_smith" / "cache.py", "# dan_smith/")
    with zipfile.ZipFile(klass / "dan smith.zip", "w") as bundle:
        bundle.writestr("dan smith/03/attention.py", "# dan smith.zip")
    write(klass / "x y.ipynb", notebook("# x y"))
    write(klass / "x_y.ipynb", notebook("# x_y"))
    submissions = found(klass, tmp_path)
    assert set(submissions) == {nfc, nfd, "Zoé", "dan_smith", "dan smith.zip", "x y.ipynb", "x_y.ipynb"}
    folders = [s.folder for s in submissions.values()]
    assert len(set(folders)) == len(folders), folders
    assert staged(submissions[nfc]) == {"02/cache.py": "# Zoë NFC"}
    assert staged(submissions[nfd]) == {"03/attention.py": "# Zoë NFD"}
    assert staged(submissions["Zoé"]) == {"03/attention.py": "# Zoé"}
    assert staged(submissions["dan_smith"]) == {"02/cache.py": "# dan_smith/"}
    assert staged(submissions["dan smith.zip"]) == {"03/attention.py": "# dan smith.zip"}
    for name in ("x y.ipynb", "x_y.ipynb"):
        path = submissions[name].path
        assert path is not None and path.name == name and b"# " + name[:3].encode() in path.read_bytes()


def test_a_class_zip_is_read_entry_by_entry_by_the_same_rules(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as bundle:
        bundle.writestr("bob/03/attention.py", "# bob")
    link = zipfile.ZipInfo("export/ann/02/cache.py")
    link.external_attr = (0o120777 << 16)  # a symbolic link, as zip -y stores one
    with zipfile.ZipFile(tmp_path / "class.zip", "w") as bundle:
        bundle.writestr("export/ann/03/attention.py", "# ann")
        bundle.writestr(link, "../../../solutions/02/cache.py")
        bundle.writestr("export/bob.zip", inner.getvalue())
        bundle.writestr("export/carol.ipynb", notebook("# carol"))
        bundle.writestr("export/dave_attention.py", "# dave")
    submissions = found(tmp_path / "class.zip", tmp_path)
    assert set(submissions) == {"ann", "bob.zip", "carol.ipynb", "dave_attention.py"}
    assert staged(submissions["ann"]) == {"03/attention.py": "# ann"}
    assert submissions["ann"].problems == [f"export/ann/02/cache.py {LINK}"]
    assert staged(submissions["bob.zip"]) == {"03/attention.py": "# bob"}
    assert staged(submissions["dave_attention.py"]) == {"03/attention.py": "# dave"}
    assert b"# carol" in submissions["carol.ipynb"].path.read_bytes()


def test_a_folder_name_is_a_readable_slug_and_a_hash_of_the_exact_name() -> None:
    names = ["Zo\u00eb", "Zoe\u0308", "Zo\u00e9", "Zoe", "Zo_", "dan smith.zip", "dan_smith.zip", "=1+1", "-1-1", "..", "",
             "grades.csv", "class.html", "a" * 300, "a" * 301]
    folders = [folder_name(n) for n in names]
    assert len(set(folders)) == len(names)
    for folder in folders:
        assert len(folder) < 80 and not folder.startswith((".", "-")) and "/" not in folder
        assert all(c.isascii() and (c.isalnum() or c in "._-") for c in folder), folder
    assert folder_name("Zo\u00eb").startswith("Zoe-") and folder_name("dan smith.zip").startswith("dan_smith.zip-")


# ---- links and special files ----


def test_links_are_never_followed_and_say_so_on_the_students_line(tmp_path: Path) -> None:
    klass = tmp_path / "class"
    write(klass / "zoe" / "03" / "attention.py", "# zoe's work")
    (klass / "eve").mkdir()
    os.symlink("../zoe", klass / "eve" / "work")  # a wrapper folder that is a link to another student
    os.symlink(REPO / "solutions", klass / "mallory")  # the entry itself: a link to the solutions
    write(klass / "oscar" / "02" / "cache.py", "# oscar's own")
    (klass / "oscar" / "03").mkdir()
    os.symlink(REPO / "solutions" / "03" / "attention.py", klass / "oscar" / "03" / "attention.py")
    os.symlink(REPO / "solutions" / "03", klass / "oscar" / "exercises")
    submissions = found(klass, tmp_path)
    assert submissions["eve"].path is None
    assert submissions["eve"].problems == ["eve/work is a symbolic link (links are not followed); skipped"]
    assert submissions["mallory"].path is None
    assert submissions["mallory"].problems == ["mallory is a symbolic link (links are not followed); skipped"]
    assert staged(submissions["oscar"]) == {"02/cache.py": "# oscar's own"}
    assert "oscar/03/attention.py is a symbolic link (links are not followed); skipped" in submissions["oscar"].problems
    assert "oscar/exercises is a symbolic link (links are not followed); skipped" in submissions["oscar"].problems


def test_fifos_sockets_and_links_named_like_submissions_are_lines_not_hangs(tmp_path: Path) -> None:
    klass = tmp_path / "class"
    klass.mkdir()
    for name in ("frank_cache.py", "grace.ipynb", "heidi.zip"):
        os.mkfifo(klass / name)
    write(klass / "ivan" / "attention.py", "# ivan")
    os.mkfifo(klass / "ivan" / "cache.py")
    code = ("import sys; from pathlib import Path; from grader.classroom.inputs import find_submissions;"
            "s = find_submissions(Path(sys.argv[1]), Path(sys.argv[2]), {'02': 'cache', '03': 'attention'});"
            "print(repr([(x.identity, x.problems) for x in s]))")
    run = subprocess.run([sys.executable, "-c", code, str(klass), str(tmp_path / "staging")], cwd=REPO,
                         capture_output=True, text=True, timeout=60)  # a FIFO that is opened blocks forever
    assert run.returncode == 0, run.stderr[-2000:]
    assert eval(run.stdout) == [
        ("frank_cache.py", ["frank_cache.py is a FIFO (named pipe); skipped"]),
        ("grace.ipynb", ["grace.ipynb is a FIFO (named pipe); skipped"]),
        ("heidi.zip", ["heidi.zip is a FIFO (named pipe); skipped"]),
        ("ivan", ["ivan/cache.py is a FIFO (named pipe); skipped"]),
    ]


@AS_ROOT
def test_staging_reads_only_what_the_entrys_owner_could_read(tmp_path: Path) -> None:
    klass = tmp_path / "class"
    student = 43_210
    write(klass / "judy" / "02" / "cache.py", "# judy's own")
    secret = write(klass / "judy" / "03" / "attention.py", "# root's only")
    for path in (klass / "judy", klass / "judy" / "02", klass / "judy" / "03", klass / "judy" / "02" / "cache.py"):
        os.chown(path, student, student)
    os.chmod(secret, 0o600)  # root's file in judy's folder: judy could not read it
    answer = write(tmp_path / "private" / "attention.py", "# the answer")
    os.chmod(answer, 0o600)
    write(klass / "kim" / "cache.py", "# kim's own")
    os.link(answer, klass / "kim" / "attention.py")  # a hard link to someone else's file
    os.chown(klass / "kim", student, student)
    os.chown(klass / "kim" / "cache.py", student, student)
    submissions = found(klass, tmp_path)
    assert staged(submissions["judy"]) == {"02/cache.py": "# judy's own"}
    assert "judy/03/attention.py cannot be read by its owner; skipped" in submissions["judy"].problems
    assert staged(submissions["kim"]) == {"02/cache.py": "# kim's own"}
    assert "kim/attention.py is a hard link to a file elsewhere; skipped" in submissions["kim"].problems


# ---- bounded, and the batch goes on ----


def test_a_huge_notebook_is_refused_by_its_size_before_it_is_read(tmp_path: Path) -> None:
    klass = tmp_path / "class"
    klass.mkdir()
    with open(klass / "huge.ipynb", "wb") as handle:
        handle.truncate(2**30)  # 1 GiB, sparse: reading it would take a gigabyte
    submission = found(klass, tmp_path)["huge.ipynb"]
    assert submission.path is None
    assert submission.problems == [("not a valid notebook: huge.ipynb is 1024.0 MiB, over the "
                                    f"{MAX_NOTEBOOK_BYTES / 2**20:g} MiB limit; not read")]


def test_deep_json_and_deep_folders_are_lines_not_crashes(tmp_path: Path) -> None:
    klass = tmp_path / "class"
    write(klass / "deep.ipynb", "[" * 100_000 + "]" * 100_000)
    write(klass / "ok" / "03" / "attention.py", "# ok")
    fd = os.open(klass / "ok", os.O_RDONLY)
    for _ in range(300):  # deeper than PATH_MAX allows as one path
        os.mkdir("d" * 40, dir_fd=fd)
        child = os.open("d" * 40, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    submissions = found(klass, tmp_path)
    assert submissions["deep.ipynb"].problems == [("not a valid notebook: deep.ipynb is not a notebook: its JSON is "
                                                   "nested more than 100 deep")]
    assert staged(submissions["ok"]) == {"03/attention.py": "# ok"} and submissions["ok"].problems == []


def test_zip_bombs_and_crowded_zips_are_refused_by_what_they_declare(tmp_path: Path, monkeypatch) -> None:
    klass = tmp_path / "class"
    klass.mkdir()
    monkeypatch.setattr(inputs, "MAX_ZIP_BYTES", 2**20)
    monkeypatch.setattr(inputs, "MAX_ZIP_ENTRIES", 100)
    with zipfile.ZipFile(klass / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as bundle, \
            bundle.open("attention.py", "w") as member:
        for _ in range(4):
            member.write(b"#" * 2**20)  # 4 MiB that compress to a few KiB
    with zipfile.ZipFile(klass / "crowd.zip", "w") as bundle:
        for i in range(150):
            bundle.writestr(f"crowd/{i}/notes.txt", "x")
    submissions = found(klass, tmp_path)
    assert submissions["bomb.zip"].problems == [("bomb.zip: the zip is too large (1 entries that unpack to 4 MiB; "
                                                 "the limits are 100 entries and 1 MiB)")]
    assert submissions["crowd.zip"].problems[0].startswith("crowd.zip: the zip is too large (150 entries")
    assert not list((tmp_path / "staging").rglob("*.py"))


def test_many_claims_give_a_short_line(tmp_path: Path) -> None:
    klass = tmp_path / "class"
    klass.mkdir()
    with zipfile.ZipFile(klass / "many.zip", "w") as bundle:
        for i in range(15_000):
            bundle.writestr(f"many/deep/{i}/x/attention.py", "")
    problems = found(klass, tmp_path)["many.zip"].problems
    assert problems == [("exercise 03: many/deep/0/x/attention.py, many/deep/1/x/attention.py, "
                         "many/deep/10/x/attention.py and 14997 more is nested too deep; put it at attention.py "
                         "or 03/attention.py")]


def test_an_entry_that_fails_to_read_is_its_own_line(tmp_path: Path, monkeypatch) -> None:
    klass = tmp_path / "class"
    write(klass / "ann" / "attention.py", "# ann")
    write(klass / "bob" / "attention.py", "# bob")

    def broken(identity, listing, staging, topics):  # reading one entry fails in a way nobody foresaw
        if identity == "ann":
            raise RecursionError("maximum recursion depth exceeded")
        return real(identity, listing, staging, topics)

    real = inputs._from_listing
    monkeypatch.setattr(inputs, "_from_listing", broken)
    submissions = found(klass, tmp_path)
    assert submissions["ann"].problems == ["could not be read: RecursionError: maximum recursion depth exceeded"]
    assert staged(submissions["bob"]) == {"03/attention.py": "# bob"}


def test_a_status_cell_is_a_few_hundred_characters_and_results_json_keeps_it_all(tmp_path: Path) -> None:
    problems = [f"problem {i}" for i in range(20_000)]
    results = write(tmp_path / "alice" / "results.json", json.dumps({"score": 0, "output": "; ".join(problems), "tests": [],
                                                                     "extra_data": {"mechgrade": {"problems": problems}}}))
    row = read_row(results, "alice")
    assert len(row.status) <= 300 and row.status.startswith("not graded: problem 0; problem 1")
    assert row.status.endswith("(see results.json)")
    assert json.loads(results.read_text())["extra_data"]["mechgrade"]["problems"] == problems


# ---- one reader for notebooks ----


@pytest.mark.parametrize("name, content", [
    ("bom.ipynb", b"\xef\xbb\xbf" + notebook("x = 1")),
    ("plain.ipynb", notebook("x = 1")),
    ("deep.ipynb", b'{"cells": [], "x": ' + b"[" * 500 + b"]" * 500 + b"}"),
    ("old.ipynb", notebook("x = 1", nbformat=3)),
    ("latin1.ipynb", notebook("x = 'é'").replace(b"\\u00e9", b"\xe9")),
    ("nocells.ipynb", b'{"nbformat": 4}'),
    ("utf16.ipynb", notebook("x = 1").decode().encode("utf-16")),
])
def test_grade_all_and_grade_submission_read_a_notebook_alike(tmp_path: Path, name: str, content: bytes) -> None:
    klass = tmp_path / "class"
    path = write(klass / name, content)
    try:
        read_notebook(path)
        single = None
    except NotebookError as exc:
        single = str(exc)
    submission = found(klass, tmp_path)[name]
    if single is None:
        assert submission.path is not None and submission.problems == [], submission.problems
        assert submission.path.read_bytes() == content
    else:
        assert submission.path is None and submission.problems == [f"not a valid notebook: {single}"]


def test_grade_submission_puts_why_a_notebook_was_refused_in_results_json_and_the_report(tmp_path: Path) -> None:
    old = write(tmp_path / "old.ipynb", notebook("x = 1", nbformat=3))
    results, report = tmp_path / "out" / "results.json", tmp_path / "out" / "report.html"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "grader", "grade", "--submission", str(old), "--exercise", "03",
                          "--model", "toy-gpt2", "--gradescope-json", str(results), "--report-html", str(report)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    why = "old.ipynb is an nbformat 3 notebook; save it with a current Jupyter (nbformat 4)"
    assert why in run.stderr
    assert why in json.loads(results.read_text())["output"]
    assert why in report.read_text()


# ---- a safe gradebook ----


@pytest.mark.parametrize("text", ["=HYPERLINK(\"evil.example\",\"y\")", "+1+1", "-1-1", "-A1-B1", "@SUM(1)", "\t=1", "\r=1"])
def test_a_cell_a_spreadsheet_would_run_starts_with_a_quote(text: str) -> None:
    assert spreadsheet_safe(text) == "'" + text
    book = Gradebook([Row(text, {"03": 1.0}, {"03": 2.0}, status=text, report=text)])
    _, row = list(csv.reader(io.StringIO(book.csv_text(), newline="")))
    assert row[0] == row[-2] == row[-1] == "'" + text  # file, grading_status, report
    assert [float(cell) for cell in row[1:-2]] == [1, 1, 2, 50]  # the numbers stay numbers


def test_merge_results_names_rows_as_grade_all_does_and_makes_every_cell_safe(tmp_path: Path) -> None:
    document = {"score": 1, "tests": [{"name": "t", "number": "3.1", "score": 1, "max_score": 2, "status": "failed"}]}
    for folder in ("=HYPERLINK(\"evil.example\",\"y\")", "+1+1", "@SUM(1)", "-1-1"):
        write(tmp_path / "results" / folder / "results.json", json.dumps(document))
    recorded = {**document, "extra_data": {"mechgrade": {"submission": "Zo\u00eb", "problems": []}}}
    write(tmp_path / "results" / folder_name("Zo\u00eb") / "results.json", json.dumps(recorded))
    write(tmp_path / "elsewhere" / "Zo\u00eb" / "results.json", json.dumps(recorded))  # a second result, same name
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "grader", "merge-results", str(tmp_path / "results"),
                          str(tmp_path / "elsewhere"), "--out", str(tmp_path / "book")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "book" / "grades.csv", newline="", encoding="utf-8") as handle:
        names = sorted(row["file"] for row in csv.DictReader(handle))
    assert names[:4] == sorted(["'=HYPERLINK(\"evil.example\",\"y\")", "'+1+1", "'-1-1", "'@SUM(1)"])
    zoe = [name for name in names if name.startswith("Zo\u00eb")]
    assert len(zoe) == 2 and len(set(zoe)) == 2, zoe  # never merged, never renamed to look alike
    page = (tmp_path / "book" / "class.html").read_text(encoding="utf-8")
    assert "=HYPERLINK(&#34;evil.example&#34;,&#34;y&#34;)" in page and "Zo\u00eb" in page


# ---- nothing left in shared temporary folders ----


@AS_ROOT
def test_the_sweep_removes_what_the_workers_user_owns_and_nothing_else(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    (shared / "public").mkdir(parents=True)
    os.chmod(shared, 0o1777)
    os.chmod(shared / "public", 0o1777)
    worker, other = 43_211, 43_212
    for path, owner in ((shared / "left.txt", worker), (shared / "public" / "deep.txt", worker),
                        (shared / "mine", worker), (shared / "theirs.txt", other)):
        write(path, "x") if path.suffix else path.mkdir()
        os.chown(path, owner, owner)
    os.symlink("/etc/passwd", shared / "link")
    os.lchown(shared / "link", worker, worker)
    assert sweep(worker, (shared,)) == []
    assert sorted(p.name for p in shared.rglob("*")) == ["public", "theirs.txt"]
    assert Path("/etc/passwd").exists()


# ---- not root ----


def test_grade_all_as_an_ordinary_user_without_landlock_refuses_unless_told_to_trust_the_submissions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # an instructor on a shared server
    monkeypatch.setenv(landlock.ENV_LANDLOCK, "off")  # as on a kernel without it
    klass, out = tmp_path / "no-such-class", tmp_path / "out"
    assert cli.main(["grade-all", str(klass), "--out", str(out)]) == 2
    said = capsys.readouterr().err
    assert "could change other students' results" in said and "--trust-submissions" in said and not out.exists()
    assert f"Landlock is turned off ({landlock.ENV_LANDLOCK}=off)" in said  # why, not only what to do
    assert cli.main(["grade-all", str(klass), "--out", str(out), "--trust-submissions"]) == 2
    assert "no such folder or zip" in capsys.readouterr().err  # it went on, and stopped for its own reason


@pytest.mark.skipif(landlock.unavailable(landlock.CLASS_ABI) is not None,
                    reason=f"needs Landlock ABI {landlock.CLASS_ABI}: {landlock.unavailable(landlock.CLASS_ABI)}")
def test_grade_all_as_an_ordinary_user_goes_on_where_landlock_confines_the_workers_but_not_on_slurm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv(landlock.ENV_LANDLOCK, raising=False)
    klass, out = tmp_path / "no-such-class", tmp_path / "out"
    assert cli.main(["grade-all", str(klass), "--out", str(out)]) == 2
    assert "no such folder or zip" in capsys.readouterr().err  # no refusal: it stopped for its own reason
    assert cli.main(["grade-all", str(klass), "--out", str(out), "--slurm"]) == 2  # the nodes' kernels are unknown
    said = capsys.readouterr().err
    assert "cluster's nodes cannot be checked for Landlock" in said and "--trust-submissions" in said
