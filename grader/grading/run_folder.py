"""Where a grading run writes its outputs until they are final: a private folder of its own.

Each output (results.json, the HTML report, JUnit XML) is written into a folder the run creates
beside its destination, ``.mechgrade-run-<host>-<pid>-<random>``, mode 700: nobody else reads a
report in the making, and the last step is a rename on one file system. At the end, on every way
out that still writes results, each file is renamed into place and the folder removed, so the
destination holds an earlier run's whole file or this run's, never one half-written. No folder
the run did not create changes mode or owner.

A run killed before its end (SIGKILL, the out-of-memory killer) leaves its run folder, and nothing
it wrote reaches the destination. Before it makes one, a run records it in a journal
(``/tmp/mechgrade-runs-<uid>/``) with the processes that write into it; ``mechgrade repair`` and
every later run remove the run folders whose processes have all ended (``remove_leftovers``).

``mechgrade grade`` owns the run folder of the grading process it starts (and may outlive: it
moves results.json into place even when that process dies), and hands it over in that process's
environment (``MECHGRADE_PRIVATE_OUTPUTS``: each destination and its private path); the grading
process writes there and leaves the moving to it. A grade-all job process hands over its
submission's staging folder the same way: that folder is the submission's run folder already.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from grader.sandbox.hiding import alive

PREFIX = ".mechgrade-run-"
ENV_PRIVATE_OUTPUTS = "MECHGRADE_PRIVATE_OUTPUTS"  # JSON {destination: private path}, from the caller
JOURNALS = Path(tempfile.gettempdir()) / f"mechgrade-runs-{os.geteuid()}"  # this user's, mode 700


class RunFolder:
    """The private twin of each destination, and the move into place at the end."""

    def __init__(self, destinations: Sequence[Path | None]) -> None:
        """`destinations`: where the outputs go (None: an output this run does not write)."""
        self.destinations = [_key(d) for d in destinations if d is not None]
        self.given = _given()  # destinations whose run folder the calling process owns
        self._private: dict[Path, Path] = {}
        self._folders: list[Path] = []
        self._pids = [os.getpid()]
        self._journal: Path | None = None
        self._tag = ""  # the run folders' names begin with it (set when they are made)
        self._parents: list[Path] = []

    def private(self, destination: Path) -> Path:
        """Where `destination`'s file is written until the end; the run folders are made on the
        first call, so a run that writes nothing makes none."""
        key = _key(destination)
        if key in self.given:
            return self.given[key]
        if key not in self.destinations:
            raise ValueError(f"{destination} is not one of this run's outputs")
        if not self._private:
            self._make()
        return self._private[key]

    def adopt(self, pid: int) -> None:
        """Another process writes here too (the grading process `mechgrade grade` starts): the
        folder is a leftover only once it has ended as well."""
        self._pids.append(pid)
        if self._journal is not None:
            _write_journal(self._journal, self._entry())

    def publish(self, destination: Path) -> bool:
        """Rename `destination`'s private file into place (a link found there is replaced, never
        followed); False when the run wrote none. Raises OSError when it cannot be moved."""
        key = _key(destination)
        if key in self.given:
            return False  # the caller moves it
        private = self._private.get(key)
        if private is None or not private.exists():
            return False
        os.replace(private, key)
        return True

    def close(self) -> None:
        """Remove the run folders (with whatever was not published) and their journal."""
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)
        self._folders, self._private = [], {}
        if self._journal is not None:
            self._journal.unlink(missing_ok=True)
            self._journal = None

    def handed_over(self) -> dict[str, str]:
        """The environment entry that hands this run's private paths to a grading process it starts."""
        return hand_over({d: self.private(d) for d in self.destinations})

    def _make(self) -> None:
        remove_leftovers()  # what killed runs left, before this one adds its own
        parents = list(dict.fromkeys(d.parent for d in self.destinations if d not in self.given))
        for parent in parents:
            parent.mkdir(parents=True, exist_ok=True)  # as writing there always did
        self._tag = f"{PREFIX}{_host()}-{os.getpid()}-"
        self._parents = parents
        self._journal = _new_journal(self._entry())  # first: a kill right after still finds the folders
        made = {parent: Path(tempfile.mkdtemp(prefix=self._tag, dir=parent)) for parent in parents}
        for folder in made.values():
            os.chmod(folder, 0o700)  # mkdtemp's mode already, whatever the umask leaves of it
        self._folders = list(made.values())
        self._private = {d: made[d.parent] / d.name for d in self.destinations if d not in self.given}

    def _entry(self) -> dict[str, object]:
        return {"pids": self._pids, "tag": self._tag, "parents": [str(p) for p in self._parents]}


def hand_over(private: dict[Path, Path]) -> dict[str, str]:
    """The environment entry that tells a grading run where to write each destination's file (a
    private path its caller moves into place); the caller sets it in that run's environment."""
    return {ENV_PRIVATE_OUTPUTS: json.dumps({str(_key(d)): str(p) for d, p in private.items()})}


def remove_leftovers() -> list[str]:
    """Remove the run folders of runs whose processes have all ended (killed before they could);
    one line per folder removed. Only this user's journals are read, and only folders named as
    run folders, owned by this user, are removed."""
    removed: list[str] = []
    if not _journals_are_ours():
        return removed
    for journal in sorted(JOURNALS.glob("*.json")):
        try:
            entry = json.loads(journal.read_text())
            pids, tag, parents = [int(p) for p in entry["pids"]], str(entry["tag"]), [Path(p) for p in entry["parents"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if any(alive(pid) for pid in pids) or not tag.startswith(PREFIX):
            continue
        for parent in parents:
            with contextlib.suppress(OSError):
                for name in os.listdir(parent):
                    folder = parent / name
                    if name.startswith(tag) and _is_own_folder(folder):
                        shutil.rmtree(folder, ignore_errors=True)
                        removed.append(f"{folder}: removed (a grading run was killed before it moved its results into place)")
        journal.unlink(missing_ok=True)
    return removed


def _key(destination: Path) -> Path:
    """One name for a destination, however it was spelled: its folder resolved (links followed),
    its own name kept (a link left there is replaced, never followed)."""
    path = Path(destination)
    return Path(os.path.realpath(path.parent)) / path.name


def _given() -> dict[Path, Path]:
    try:
        mapping = json.loads(os.environ.get(ENV_PRIVATE_OUTPUTS, "") or "{}")
        return {_key(Path(k)): Path(v) for k, v in mapping.items()}
    except (ValueError, AttributeError, TypeError):
        return {}


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:40] or "host"


def _is_own_folder(path: Path) -> bool:
    info = os.lstat(path)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def _journals_are_ours() -> bool:
    """The journal folder is a real folder of this user's that nobody else may write (it names
    folders to remove: another user's must never be trusted)."""
    try:
        info = os.lstat(JOURNALS)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077


def _new_journal(entry: dict[str, object]) -> Path | None:
    """A journal for this run, or None where none can be kept (the run still works; a kill then
    leaves a folder only a hand removes)."""
    with contextlib.suppress(OSError):  # it exists (checked below), or /tmp refuses: no journal
        JOURNALS.mkdir(mode=0o700)
    if not _journals_are_ours():
        return None
    try:
        fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}-", suffix=".json", dir=JOURNALS)
        os.close(fd)
        _write_journal(Path(name), entry)
    except OSError:
        return None
    return Path(name)


def _write_journal(path: Path, entry: dict[str, object]) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as handle:
        json.dump(entry, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
