"""A class's submissions, found in a folder or a zip, each made into something one grading run takes.

An entry of the class folder (or zip) is one submission, and its exact name is who it is
(grader.classroom.identity):

- a folder, laid out like exercises/ (``03/attention.py``), flat (``attention.py``), or either of
  those inside one wrapping folder (what a zip tool often adds);
- a zip of one such folder;
- a notebook (``.ipynb``): passed on to ``--submission`` once it reads as a notebook, by the same
  reader ``mechgrade grade --submission`` uses (grader.student.notebook_cells);
- loose ``.py`` files named ``<student><sep><topic>.py`` (``alice_attention.py``, as LMS exports
  name them): the files of one student prefix make one submission, named by those files.

Only the recognised modules are copied, as ``NN/<topic>.py``, into a staging folder of the
submission's own; the rest of the entry is never copied. Reading is bounded and follows no link
(grader.classroom.safe_files): links, FIFOs, sockets, devices and files the entry's owner could not
read are skipped, with a note on the submission's line. What cannot be graded (an empty folder, a
module nested too deep, two files claiming one exercise, a broken zip or notebook, anything that
failed while reading it) becomes a problem on the submission's line of the gradebook; the batch
goes on.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from grader.classroom.identity import folder_name, shown
from grader.classroom.safe_files import (
    FILE_FLAGS,
    Owner,
    Refused,
    kind_of,
    open_beneath,
    open_dir,
    read_limited,
    walk,
)
from grader.student.notebook_cells import MAX_NOTEBOOK_BYTES, NotebookError, notebook_from_bytes

IGNORED = {"__MACOSX", "__pycache__", ".ipynb_checkpoints", ".git", ".DS_Store", "node_modules", "venv"}
MAX_ZIP_BYTES = 200 * 2**20  # a student's zip: its size on disk, and what it says it unpacks to
MAX_ZIP_ENTRIES = 20_000  # files and folders in one submission (a zip's, or a folder's)
MAX_CLASS_ZIP_BYTES = 2 * 2**30  # a whole class's export
MAX_CLASS_ZIP_ENTRIES = 200_000
MAX_MODULE_BYTES = 5 * 2**20  # a graded module larger than this is not a module
MAX_DEPTH = 10  # folders within a submission: modules are found at most 4 deep (wrapper, exercises, NN)
PROBLEM_CHARS = 300  # one problem's words on the gradebook's line; the whole list goes to results.json


@dataclass
class Submission:
    identity: str  # the exact entry name (or loose files' names) in the class folder or zip
    path: Path | None = None  # what `--submission` gets; None: nothing to grade
    exercises: list[str] = field(default_factory=list)  # exercises with a module found (all, for a notebook)
    problems: list[str] = field(default_factory=list)  # for the gradebook's grading status

    @property
    def folder(self) -> str:
        """The name of every folder made for it: OUT/<folder>/ holds its results and report."""
        return folder_name(self.identity)

    @property
    def shown(self) -> str:
        return shown(self.identity)


@dataclass
class Listing:
    """What one submission holds: its files (path parts -> size) and folders; `read` gives a
    file's bytes, bounded; `skipped` says what was left out and why."""

    files: dict[tuple[str, ...], int]
    folders: set[tuple[str, ...]]
    read: Callable[[tuple[str, ...], int], bytes]
    skipped: list[str] = field(default_factory=list)


def exercise_topics(exercises_dir: Path, only: list[str] | None = None) -> dict[str, str]:
    """{"03": "attention", ...} from exercises/NN/test_NN_<topic>.py."""
    topics = {}
    for check in sorted(exercises_dir.glob("[0-9][0-9]/test_[0-9][0-9]_*.py")):
        exercise = check.parent.name
        if check.name.startswith(f"test_{exercise}_") and (not only or exercise in only):
            topics[exercise] = check.stem[len(f"test_{exercise}_"):]
    return topics


def find_submissions(source: Path, staging: Path, topics: dict[str, str]) -> list[Submission]:
    """Every submission in `source` (a folder or a zip), staged under `staging` (emptied first),
    each in staging/<its folder name>/."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if source.is_dir():
        fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return _find(FolderClass(fd), staging, topics)
        finally:
            os.close(fd)
    if source.is_file():
        try:
            bundle = _open_zip(os.open(source, FILE_FLAGS & ~os.O_NOFOLLOW), source.name, MAX_CLASS_ZIP_BYTES,
                               MAX_CLASS_ZIP_ENTRIES)
        except (Refused, OSError) as exc:
            raise ValueError(f"{source}: {exc}") from None
        with bundle:
            listing = zip_listing(bundle, source.name)
            return _find(ZipClass(listing, _unwrap(listing, topics)), staging, topics)
    raise ValueError(f"{source}: no such folder or zip")


def _find(klass: FolderClass | ZipClass, staging: Path, topics: dict[str, str]) -> list[Submission]:
    found: list[Submission] = []
    loose: dict[str, list[str]] = {}
    for name, kind in klass.entries():
        try:
            if kind is not None:
                found.append(Submission(name, problems=[f"{shown(name)} is {kind}; skipped"]))
            elif klass.is_folder(name):
                with klass.listing(name) as listing:
                    found.append(_from_listing(name, listing, staging, topics))
            elif name.endswith(".zip"):
                found.append(_from_zip(name, klass, staging, topics))
            elif name.endswith(".ipynb"):
                found.append(_from_notebook(name, klass, staging))
            elif name.endswith(".py"):
                loose.setdefault(_student_of(name[:-3], topics), []).append(name)
            else:
                what = f"not a submission: {shown(name)} is not a folder, .zip, .ipynb or .py file"
                found.append(Submission(name, problems=[what]))
        except Exception as exc:  # noqa: BLE001 (whatever one entry does, the batch goes on: its line says what)
            found.append(Submission(name, problems=[_cut(f"could not be read: {type(exc).__name__}: {exc}")]))
    taken = {s.identity for s in found}
    for files in loose.values():
        identity = ", ".join(sorted(files))
        identity = identity if identity not in taken else f"{identity} (loose files)"
        try:
            found.append(_from_loose_files(identity, files, klass, staging, topics))
        except Exception as exc:  # noqa: BLE001 (as above)
            found.append(Submission(identity, problems=[_cut(f"could not be read: {type(exc).__name__}: {exc}")]))
    return found


# ---- the class: a folder or a zip ----


class FolderClass:
    """The class folder, read through a descriptor: no entry's link is followed."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def entries(self) -> list[tuple[str, str | None]]:
        """(name, what special file it is or None), sorted; hidden and ignored names left out."""
        with os.scandir(self.fd) as listing:
            names = sorted(entry.name for entry in listing)
        return [(n, kind_of(os.stat(n, dir_fd=self.fd, follow_symlinks=False).st_mode))
                for n in names if n not in IGNORED and not n.startswith(".")]

    def is_folder(self, name: str) -> bool:
        return stat.S_ISDIR(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode)

    def owner(self, name: str) -> Owner:
        return Owner.of(os.stat(name, dir_fd=self.fd, follow_symlinks=False))

    @contextmanager
    def listing(self, name: str) -> Iterator[Listing]:
        """The folder's listing; its files can be read until the block ends."""
        owner = self.owner(name)
        owner.check(os.stat(name, dir_fd=self.fd, follow_symlinks=False), shown(name))
        root = open_dir(self.fd, name)
        try:
            yield _walked(root, owner, f"{shown(name)}/")
        finally:
            os.close(root)

    def read(self, name: str, limit: int) -> bytes:
        return read_limited(open_beneath(self.fd, (name,), self.owner(name), shown(name)), limit, shown(name))


def _walked(root: int, owner: Owner, where: str) -> Listing:
    """A folder's listing; a file is read only when asked for, through `root`, as `owner` could."""
    files: dict[tuple[str, ...], int] = {}
    folders: set[tuple[str, ...]] = set()
    skipped: list[str] = []
    for item in walk(root, owner, IGNORED, MAX_DEPTH, MAX_ZIP_ENTRIES, where):
        if isinstance(item, Refused):
            skipped.append(_cut(str(item)))
        elif item.is_dir:
            folders.add(item.parts)
        else:
            files[item.parts] = item.size

    def read(parts: tuple[str, ...], limit: int) -> bytes:
        shown_path = where + "/".join(parts)
        return read_limited(open_beneath(root, parts, owner, shown_path), limit, shown_path)

    return Listing(files, folders, read, skipped)


class ZipClass:
    """A class exported as one zip: its top-level entries (inside any wrapping folder) are the
    submissions; nothing is unpacked to disk."""

    def __init__(self, listing: Listing, root: tuple[str, ...]) -> None:
        self.whole, self.root = listing, root

    def entries(self) -> list[tuple[str, str | None]]:
        return [(name, None) for name in _children(self.whole, self.root)
                if name not in IGNORED and not name.startswith(".")]

    def is_folder(self, name: str) -> bool:
        return (*self.root, name) in self.whole.folders

    @contextmanager
    def listing(self, name: str) -> Iterator[Listing]:
        prefix = (*self.root, name)
        n = len(prefix)
        yield Listing({p[n:]: size for p, size in self.whole.files.items() if p[:n] == prefix},
                       {p[n:] for p in self.whole.folders if p[:n] == prefix and len(p) > n},
                       lambda parts, limit: self.whole.read((*prefix, *parts), limit),
                       [s for s in self.whole.skipped if s.startswith(shown("/".join(prefix)) + "/")])

    def read(self, name: str, limit: int) -> bytes:
        return self.whole.read((*self.root, name), limit)


# ---- zips ----


def _open_zip(fd: int, name: str, max_bytes: int, max_entries: int) -> zipfile.ZipFile:
    """A zip from an open descriptor (closed here on failure): a regular file of at most
    `max_bytes`, holding at most `max_entries` entries that say they unpack to at most `max_bytes`."""
    handle = os.fdopen(fd, "rb")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{name} is {kind_of(info.st_mode)}")
        if info.st_size > max_bytes:
            raise Refused(f"{name} is {info.st_size / 2**20:.0f} MiB, over the {max_bytes >> 20} MiB limit")
        os.set_blocking(fd, True)
        bundle = zipfile.ZipFile(handle)
        members = bundle.infolist()
        declared = sum(m.file_size for m in members)
        if len(members) > max_entries or declared > max_bytes:
            bundle.close()
            raise Refused(f"the zip is too large ({len(members)} entries that unpack to {declared / 2**20:.0f} MiB; "
                          f"the limits are {max_entries} entries and {max_bytes >> 20} MiB)")
        return bundle
    except BaseException:
        handle.close()
        raise


def zip_listing(bundle: zipfile.ZipFile, name: str) -> Listing:
    """A zip's files and folders (no absolute path, no '..', no link, nothing too deep); a file's
    bytes are read only when asked for, bounded by what the zip says its size is. What is skipped
    is noted by its path in the zip."""
    files: dict[tuple[str, ...], int] = {}
    folders: set[tuple[str, ...]] = set()
    members: dict[tuple[str, ...], zipfile.ZipInfo] = {}
    skipped: list[str] = []
    for member in bundle.infolist():
        parts = PurePosixPath(member.filename.replace("\\", "/")).parts
        if not parts or IGNORED & set(parts) or any(p.startswith(".") for p in parts):
            continue
        where = "/".join(parts)
        if parts[0] == "/" or ".." in parts:
            skipped.append(_cut(f"{where} points outside the zip; skipped"))
            continue
        if len(parts) > MAX_DEPTH + 1:
            continue  # deeper than any module is looked for
        mode = member.external_attr >> 16
        special = kind_of(mode) if mode & 0o170000 else None
        if special:
            skipped.append(_cut(f"{where} is {special}; skipped"))
            continue
        folders.update(parts[:i] for i in range(1, len(parts)))
        if member.is_dir():
            folders.add(parts)
        else:
            files[parts], members[parts] = member.file_size, member

    def read(parts: tuple[str, ...], limit: int) -> bytes:
        member = members.get(parts)
        if member is None:
            raise Refused(f"{name}: {'/'.join(parts)} is not a file in the zip")
        if member.file_size > limit:
            raise Refused(f"{name}: {'/'.join(parts)} is over the {limit / 2**20:g} MiB limit; not read")
        with bundle.open(member) as source:  # reads at most the size the zip states, checks the CRC
            return source.read(limit + 1)

    return Listing(files, folders, read, skipped)


# ---- one entry ----


def _from_listing(identity: str, listing: Listing, staging: Path, topics: dict[str, str]) -> Submission:
    submission = Submission(identity, problems=list(listing.skipped))
    root = _unwrap(listing, topics)
    target = staging / submission.folder / "graded"
    every = sorted(p for p in listing.files if p[: len(root)] == root and p[-1].endswith(".py"))
    for exercise, topic in topics.items():
        module = f"{topic}.py"
        claims = [p for p in every if p[-1] == module]
        accepted = [p for p in claims if p[len(root):] in ((module,), (exercise, module), ("exercises", exercise, module))]
        if len(accepted) > 1:
            submission.problems.append(f"exercise {exercise}: {len(accepted)} files claim it ({_paths(accepted)}); "
                                       "neither was graded")
        elif accepted and listing.files[accepted[0]] > MAX_MODULE_BYTES:
            submission.problems.append(f"exercise {exercise}: {_paths(accepted)} is over {MAX_MODULE_BYTES >> 20} MiB; "
                                       "not graded")
        elif accepted:
            try:
                code = listing.read(accepted[0], MAX_MODULE_BYTES)
            except Refused as refused:
                submission.problems.append(_cut(f"exercise {exercise}: {refused}"))
                continue
            destination = target / exercise / module
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(code)
            submission.exercises.append(exercise)
        elif claims:
            submission.problems.append(f"exercise {exercise}: {_paths(claims)} is nested too deep; put it at "
                                       f"{module} or {exercise}/{module}")
    if submission.exercises:
        submission.path = target
    elif not submission.problems:
        modules = ", ".join(f"{t}.py" for t in topics.values())
        submission.problems.append(f"empty: no exercise module found (looked for {modules})")
    return submission


def _from_zip(name: str, klass: FolderClass | ZipClass, staging: Path, topics: dict[str, str]) -> Submission:
    try:
        if isinstance(klass, FolderClass):
            fd = open_beneath(klass.fd, (name,), klass.owner(name), shown(name))
        else:  # a zip in the class's zip: into a file of its own (zipfile needs to seek), bounded
            copy = staging / folder_name(name) / "archive.zip"
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(klass.read(name, MAX_ZIP_BYTES))
            fd = os.open(copy, FILE_FLAGS)
        bundle = _open_zip(fd, shown(name), MAX_ZIP_BYTES, MAX_ZIP_ENTRIES)
    except (Refused, zipfile.BadZipFile, OSError, EOFError) as exc:
        return Submission(name, problems=[_cut(f"{shown(name)}: {_zip_problem(exc)}")])
    with bundle:
        try:
            listing = zip_listing(bundle, shown(name))
            listing.skipped = [f"{shown(name)}: {note}" for note in listing.skipped]
            return _from_listing(name, listing, staging, topics)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
            return Submission(name, problems=[_cut(f"{shown(name)}: {_zip_problem(exc)}")])
        finally:
            (staging / folder_name(name) / "archive.zip").unlink(missing_ok=True)


def _zip_problem(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, Refused) else f"not a readable zip ({type(exc).__name__}: {exc})"


def _from_notebook(name: str, klass: FolderClass | ZipClass, staging: Path) -> Submission:
    submission = Submission(name)
    try:
        raw = klass.read(name, MAX_NOTEBOOK_BYTES)
        notebook_from_bytes(raw, shown(name))  # what `grade --submission` would refuse, refused now
    except (Refused, NotebookError) as exc:
        submission.problems.append(_cut(f"not a valid notebook: {exc}"))
        return submission
    copy = staging / submission.folder / name  # the class folder stays out of the workers' reach
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(raw)
    submission.path = copy
    return submission


def _from_loose_files(identity: str, files: list[str], klass: FolderClass | ZipClass, staging: Path,
                      topics: dict[str, str]) -> Submission:
    submission = Submission(identity)
    claims: dict[str, list[str]] = {}
    for file in files:
        exercise = next((ex for ex, topic in topics.items() if file[:-3].endswith(topic)), None)
        if exercise is None:
            submission.problems.append(f"{shown(file)} names no exercise's module "
                                       f"({', '.join(f'{t}.py' for t in topics.values())})")
        else:
            claims.setdefault(exercise, []).append(file)
    folder = staging / submission.folder / "graded"
    for exercise, claimed in sorted(claims.items()):
        if len(claimed) > 1:
            submission.problems.append(f"exercise {exercise}: {len(claimed)} files claim it "
                                       f"({', '.join(map(shown, claimed))}); neither was graded")
            continue
        try:
            code = klass.read(claimed[0], MAX_MODULE_BYTES)
        except Refused as refused:
            submission.problems.append(_cut(f"exercise {exercise}: {refused}"))
            continue
        target = folder / exercise / f"{topics[exercise]}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(code)
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


def _children(listing: Listing, root: tuple[str, ...]) -> list[str]:
    n = len(root)
    return sorted({p[n] for p in (*listing.files, *listing.folders) if len(p) > n and p[:n] == root})


def _unwrap(listing: Listing, topics: dict[str, str]) -> tuple[str, ...]:
    """Step into single wrapping folders ('alice/' inside alice.zip) until something is there."""
    root: tuple[str, ...] = ()
    for _ in range(3):
        children = _children(listing, root)
        if len(children) == 1 and (*root, children[0]) in listing.folders and not children[0].isdigit() \
                and children[0] != "exercises":
            root = (*root, children[0])
        else:
            break
    return root


def _paths(paths: list[tuple[str, ...]], most: int = 3) -> str:
    """'a/b.py, c.py and 12 more': a bounded list for the gradebook's line."""
    named = ", ".join(shown("/".join(p)) for p in paths[:most])
    return named + (f" and {len(paths) - most} more" if len(paths) > most else "")


def _cut(text: str) -> str:
    return text if len(text) <= PROBLEM_CHARS else text[: PROBLEM_CHARS - 1] + "…"

