"""A class's submissions, found in a folder or a zip, each made into something one grading run takes.

An entry of the class folder (or zip) is one submission:

- a folder, laid out like exercises/ (``03/attention.py``), flat (``attention.py``), or either of
  those inside one wrapping folder (what a zip tool often adds);
- a zip of one such folder;
- a notebook (``.ipynb``): passed on to ``--submission`` unchanged, once it is valid JSON;
- loose ``.py`` files named ``<student><sep><topic>.py`` (``alice_attention.py``, as LMS exports
  name them): the files of one student prefix make one submission.

Folders and zips are copied into a staging folder as ``NN/<topic>.py`` only, so that what is
graded is exactly what was recognised. What cannot be graded (an empty folder, a module nested too
deep, two files claiming one exercise, a broken zip or notebook) becomes a problem on the
submission's line of the gradebook; the batch goes on.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

IGNORED = {"__MACOSX", "__pycache__", ".ipynb_checkpoints", ".git", ".DS_Store"}
MAX_ZIP_BYTES = 200 * 2**20  # uncompressed, per zip: a class export or one student's work
MAX_ZIP_ENTRIES = 20_000
MAX_MODULE_BYTES = 5 * 2**20  # a graded module larger than this is not a module
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Submission:
    name: str  # unique, safe as a folder name: DIR/<name>/ holds its reports
    source: str  # what the class folder held: "alice/", "bob.zip", "carol.ipynb", "dave_*.py"
    path: Path | None = None  # what `--submission` gets; None: nothing to grade
    exercises: list[str] = field(default_factory=list)  # exercises with a module found (all, for a notebook)
    problems: list[str] = field(default_factory=list)  # for the gradebook's grading status


def exercise_topics(exercises_dir: Path, only: list[str] | None = None) -> dict[str, str]:
    """{"03": "attention", ...} from exercises/NN/test_NN_<topic>.py."""
    topics = {}
    for check in sorted(exercises_dir.glob("[0-9][0-9]/test_[0-9][0-9]_*.py")):
        exercise = check.parent.name
        if check.name.startswith(f"test_{exercise}_") and (not only or exercise in only):
            topics[exercise] = check.stem[len(f"test_{exercise}_"):]
    return topics


def find_submissions(source: Path, staging: Path, topics: dict[str, str]) -> list[Submission]:
    """Every submission in `source` (a folder or a zip), staged under `staging` (emptied first)."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if source.is_file():
        unpacked = staging / "_class"
        problem = _extract(source, unpacked)
        if problem:
            raise ValueError(f"{source}: {problem}")
        source = _unwrap(unpacked, topics)
    if not source.is_dir():
        raise ValueError(f"{source}: no such folder or zip")
    found: list[Submission] = []
    loose: dict[str, list[Path]] = {}
    for entry in sorted(source.iterdir(), key=lambda p: p.name):
        if entry.name in IGNORED or entry.name.startswith(".") or entry.is_symlink():
            continue
        if entry.is_dir():
            found.append(_from_folder(entry.name, f"{entry.name}/", entry, staging, topics))
        elif entry.suffix == ".zip":
            found.append(_from_zip(entry, staging, topics))
        elif entry.suffix == ".ipynb":
            found.append(_from_notebook(entry, staging))
        elif entry.suffix == ".py":
            loose.setdefault(_student_of(entry.stem, topics), []).append(entry)
        else:
            found.append(Submission(entry.stem or entry.name, entry.name,
                                    problems=[f"not a submission: {entry.name} is not a folder, .zip, .ipynb or .py file"]))
    for student, files in loose.items():
        found.append(_from_loose_files(student, files, staging, topics))
    return _unique_names(found)


# ---- one entry ----


def _from_folder(name: str, shown: str, folder: Path, staging: Path, topics: dict[str, str]) -> Submission:
    submission = Submission(name, shown)
    root = _unwrap(folder, topics)
    target = staging / "_staged" / SAFE_NAME.sub("_", name)
    every = [p for p in sorted(root.rglob("*.py"), key=lambda p: str(p.relative_to(root))) if not (IGNORED & set(p.relative_to(root).parts)) and p.is_file()
             and not p.is_symlink()]
    for exercise, topic in topics.items():
        claims = [p for p in every if p.name == f"{topic}.py"]
        accepted = [p for p in claims if p.relative_to(root).parts in
                    ((p.name,), (exercise, p.name), ("exercises", exercise, p.name))]
        shown_paths = ", ".join(str(p.relative_to(folder)) for p in accepted)
        if len(accepted) > 1:
            submission.problems.append(f"exercise {exercise}: {len(accepted)} files claim it ({shown_paths}); "
                                       "neither was graded")
        elif accepted and accepted[0].stat().st_size > MAX_MODULE_BYTES:
            submission.problems.append(f"exercise {exercise}: {shown_paths} is over {MAX_MODULE_BYTES >> 20} MiB; not graded")
        elif accepted:
            destination = target / exercise / f"{topic}.py"
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(accepted[0], destination)
            submission.exercises.append(exercise)
        elif claims:
            deep = ", ".join(str(p.relative_to(folder)) for p in claims)
            submission.problems.append(f"exercise {exercise}: {deep} is nested too deep; put it at {topic}.py "
                                       f"or {exercise}/{topic}.py")
    if submission.exercises:
        submission.path = target
    elif not submission.problems:
        modules = ", ".join(f"{t}.py" for t in topics.values())
        submission.problems.append(f"empty: no exercise module found (looked for {modules})")
    return submission


def _from_zip(archive: Path, staging: Path, topics: dict[str, str]) -> Submission:
    unpacked = staging / "_zips" / SAFE_NAME.sub("_", archive.stem)
    problem = _extract(archive, unpacked)
    if problem:
        return Submission(archive.stem, archive.name, problems=[f"{archive.name}: {problem}"])
    return _from_folder(archive.stem, archive.name, unpacked, staging, topics)


def _from_notebook(notebook: Path, staging: Path) -> Submission:
    submission = Submission(notebook.stem, notebook.name)
    try:
        document = json.loads(notebook.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or not isinstance(document.get("cells"), list):
            raise ValueError("it has no list of cells")
    except (ValueError, UnicodeDecodeError) as exc:
        submission.problems.append(f"not a valid notebook: {notebook.name}: {str(exc)[:200]}")
        return submission
    copy = staging / "_notebooks" / SAFE_NAME.sub("_", notebook.name)  # the class folder stays out of reach
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(notebook, copy)
    submission.path = copy
    return submission


def _from_loose_files(student: str, files: list[Path], staging: Path, topics: dict[str, str]) -> Submission:
    shown = ", ".join(sorted(f.name for f in files))
    submission = Submission(student or "loose-files", shown)
    claims: dict[str, list[Path]] = {}
    for file in files:
        exercise = next((ex for ex, topic in topics.items() if file.stem.endswith(topic)), None)
        if exercise is None:
            submission.problems.append(f"{file.name} names no exercise's module "
                                       f"({', '.join(f'{t}.py' for t in topics.values())})")
        else:
            claims.setdefault(exercise, []).append(file)
    folder = staging / "_staged" / SAFE_NAME.sub("_", submission.name)
    for exercise, claimed in sorted(claims.items()):
        if len(claimed) > 1:
            submission.problems.append(f"exercise {exercise}: {len(claimed)} files claim it "
                                       f"({', '.join(f.name for f in claimed)}); neither was graded")
            continue
        target = folder / exercise / f"{topics[exercise]}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(claimed[0], target)
        submission.exercises.append(exercise)
    if submission.exercises:
        submission.path = folder
    return submission


def _student_of(stem: str, topics: dict[str, str]) -> str:
    """'alice_12_attention' -> 'alice_12'; a stem that ends with no topic is its own student."""
    for topic in sorted(topics.values(), key=len, reverse=True):
        if stem.endswith(topic):
            return stem[: -len(topic)].rstrip("_-. ")
    return stem


# ---- helpers ----


def _unwrap(folder: Path, topics: dict[str, str]) -> Path:
    """Step into single wrapping folders ('alice/' inside alice.zip) until something is there."""
    modules = {f"{t}.py" for t in topics.values()}
    for _ in range(3):
        entries = [p for p in folder.iterdir() if p.name not in IGNORED and not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir() and not entries[0].name.isdigit() \
                and entries[0].name != "exercises" and not any((folder / m).exists() for m in modules):
            folder = entries[0]
        else:
            break
    return folder


def _extract(archive: Path, target: Path) -> str | None:
    """Unzip safely (no absolute paths, no '..', no links, bounded size); a problem, or None."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            if len(members) > MAX_ZIP_ENTRIES or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
                return f"the zip is too large (over {MAX_ZIP_ENTRIES} entries or {MAX_ZIP_BYTES >> 20} MiB unpacked)"
            target.mkdir(parents=True, exist_ok=True)
            for member in members:
                parts = PurePosixPath(member.filename.replace("\\", "/")).parts
                if member.is_dir() or not parts or parts[0] == "/" or ".." in parts:
                    continue
                if (member.external_attr >> 16) & 0o170000 == 0o120000:  # a symbolic link
                    continue
                destination = target.joinpath(*parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as exc:
        return f"not a readable zip ({type(exc).__name__}: {exc})"
    return None


def _unique_names(submissions: list[Submission]) -> list[Submission]:
    seen: set[str] = set()
    for submission in submissions:
        base = SAFE_NAME.sub("_", submission.name).strip("._") or "submission"
        name, n = base, 2
        while name.lower() in seen or name.lower() in {"class.html", "grades.csv"}:
            name, n = f"{base}-{n}", n + 1
        seen.add(name.lower())
        submission.name = name
    return submissions
