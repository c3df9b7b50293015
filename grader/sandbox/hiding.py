"""Hiding the answers from the worker without changing what the grading run did not create.

As root, workers run as another user, and must not read the reference solutions, the expected
values or the git history that holds both. Two ways, chosen once per process:

- ``namespace`` (preferred): each worker, before it drops root, enters a mount namespace of its
  own and mounts an empty, root-only, read-only tmpfs over every hidden folder. Nothing the
  grader or anyone else sees changes, and there is nothing to undo: the mounts end with the
  worker, even when the grader is killed with SIGKILL.
- ``modes`` (where the kernel refuses a mount namespace: a container without CAP_SYS_ADMIN):
  the grader makes each hidden folder root-only (chmod 700) and puts its mode back on every way
  out (normal end, exception, Ctrl-C, SIGTERM, the total timeout). Before it changes a mode it
  writes the old one to a journal in a root-only folder, so that ``mechgrade repair`` can put
  back what a SIGKILL of the grader left (``mechgrade grade`` runs the repair itself when its
  grading process dies).

``MECHGRADE_HIDING=namespace|modes`` forces one (an operator's choice; the tests use it).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
ENV_HIDING = "MECHGRADE_HIDING"
ENV_HIDE_ALSO = "MECHGRADE_HIDE_ALSO"  # more folders to cover in each worker (grade-all: the class's files)
JOURNALS = Path(tempfile.gettempdir()) / "mechgrade-hidden"  # root-only: one file per hiding run
REPAIR_COMMAND = "mechgrade repair"

_method: str | None = None


class HidingError(RuntimeError):
    """The answers could not be hidden: grading must not start (the message says why)."""


def method() -> str:
    """'namespace' where this kernel lets root make a private mount namespace, else 'modes'."""
    global _method
    forced = os.environ.get(ENV_HIDING, "").strip()
    if forced in ("namespace", "modes"):
        return forced
    if _method is None:
        _method = "namespace" if _namespace_works() else "modes"
    return _method


# Looked up once, here: a process forked from one that runs threads must not enter the dynamic
# loader (another thread may have held its lock at the fork), and these run right after a fork.
_LIBC = ctypes.CDLL(None, use_errno=True)
_unshare, _mount = _LIBC.unshare, _LIBC.mount


def _namespace_works() -> bool:
    """Try it in a throwaway child: unshare, then mount a tmpfs (a container may allow the first
    and refuse the second)."""
    if os.geteuid() != 0 or not hasattr(os, "fork"):
        return False
    probe = tempfile.mkdtemp(prefix="mechgrade-probe-")
    try:
        pid = os.fork()
        if pid == 0:  # only libc calls here: safe after a fork from a process that runs threads
            try:
                hide_in_this_process([probe])
                os._exit(0)
            except BaseException:
                os._exit(1)
        return os.waitpid(pid, 0)[1] == 0
    finally:
        os.rmdir(probe)


def hide_in_this_process(folders: Iterable[str]) -> None:
    """Enter a mount namespace of this process's own and cover each folder with an empty,
    root-only, read-only tmpfs. Only this process and its children see the change."""
    if _unshare(CLONE_NEWNS) != 0:
        raise HidingError(f"unshare(CLONE_NEWNS) failed: {os.strerror(ctypes.get_errno())}")
    # Private first: a mount made below must never propagate back to the grader's namespace.
    if _mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise HidingError(f"making / private failed: {os.strerror(ctypes.get_errno())}")
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    for folder in folders:
        if _mount(b"mechgrade-hidden", os.fsencode(folder), b"tmpfs", flags, b"mode=700,size=4k") != 0:
            raise HidingError(f"covering {folder} failed: {os.strerror(ctypes.get_errno())}")


def answer_folders(root: Path, fixtures_dir: Path) -> list[Path]:
    """What the worker must not read: the reference solutions, the expected values (not the
    model folders, which exercise 01 loads) and the git history that holds both."""
    folders = [root / "solutions", root / ".git"]
    if fixtures_dir.is_dir():
        folders += [p for p in sorted(fixtures_dir.iterdir()) if p.is_dir() and p.name != "models"]
    return folders


class ModeLock:
    """The ``modes`` way: folders made root-only, their modes journalled first and put back on
    every way out this process has (see the module's docstring)."""

    def __init__(self) -> None:
        self.journal: Path | None = None
        self.saved: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def lock(self, folders: Iterable[Path]) -> None:
        saved = [(str(f), f.stat().st_mode & 0o7777) for f in folders if f.is_dir()]
        saved = [(path, mode) for path, mode in saved if mode & 0o077]  # already private: nothing to do
        if not saved:
            return
        JOURNALS.mkdir(mode=0o700, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}-", suffix=".json", dir=JOURNALS)
        with os.fdopen(fd, "w") as handle:  # written before any mode changes, so a kill finds it
            json.dump({"pid": os.getpid(), "modes": saved}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        self.journal, self.saved = Path(name), saved
        atexit.register(self.restore)  # the caller's own clean-up comes first; this is the last resort
        for path, mode in saved:
            os.chmod(path, 0o700)

    def hand_over(self) -> list[tuple[str, int]]:
        """The modes to put back, for a record that outlives this process (a Slurm job array
        grades after its submitter has exited): this process no longer restores them."""
        with self._lock:
            saved, journal, self.saved, self.journal = self.saved, self.journal, [], None
        if journal is not None:
            journal.unlink(missing_ok=True)
            atexit.unregister(self.restore)
        return saved

    def restore(self) -> None:
        with self._lock:
            saved, journal, self.saved, self.journal = self.saved, self.journal, [], None
        for path, mode in saved:
            with contextlib.suppress(OSError):  # a folder removed meanwhile has no mode to restore
                os.chmod(path, mode)
        if journal is not None:
            journal.unlink(missing_ok=True)
            atexit.unregister(self.restore)


def repair(only_pid: int | None = None) -> list[str]:
    """Put back the modes that a grading process killed before it could (SIGKILL, a crash) left
    changed; returns one line per folder repaired. Journals of processes still running are left
    alone, unless `only_pid` names one (a process its caller knows has ended)."""
    repaired: list[str] = []
    if not JOURNALS.is_dir():
        return repaired
    for journal in sorted(JOURNALS.glob("*.json")):
        try:
            entry = json.loads(journal.read_text())
            pid = int(entry["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if only_pid is not None and pid != only_pid:
            continue
        if only_pid is None and alive(pid):
            continue
        for path, mode in entry["modes"]:
            try:
                os.chmod(path, int(mode))
                repaired.append(f"{path}: mode {int(mode):o} restored")
            except OSError:
                pass
        journal.unlink(missing_ok=True)
    return repaired


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie nobody has reaped yet does not: it will restore nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
