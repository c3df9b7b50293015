"""Fault or mistake: which failures a check sees are the grading environment's, not the student's.

A check that fails because the machine failed must not cost the student points silently. These
are the environment's:

- an ``OSError`` of the kind a machine causes (no permission, an I/O error, a full or read-only
  disk, no memory, too many open files) on a path outside the submission and the worker's
  scratch folder: matplotlib's font file that the worker's user cannot read, say. A missing file
  is not among them (a student's code may well open a path that does not exist);
- a ``MemoryError`` in the grader's own process (isolated grading: no student code runs there);
- a worker killed by the machine: the kernel's out-of-memory killer (its counter went up while
  the worker ran), or a SIGKILL where that counter cannot be read.

Each makes its check say so, and marks the run as needing a re-grade. A hostile submission that
fakes one gains nothing: the check still scores 0, and a re-grade grades it again.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

MACHINE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EIO, errno.ENOSPC, errno.EROFS, errno.ENOMEM,
                  errno.EMFILE, errno.ENFILE, getattr(errno, "EDQUOT", errno.ENOSPC)}
OS_ERRORS = {"OSError", "PermissionError", "IOError"}
# Where the kernel counts its out-of-memory kills: cgroup v2, then v1.
OOM_COUNTERS = (Path("/sys/fs/cgroup/memory.events"), Path("/sys/fs/cgroup/memory/memory.oom_control"))
REGRADE = "the grading environment failed, not your code"


def os_error_fault(builtin: str, number: int | None, filename: str | None, own: list[Path]) -> str | None:
    """What to say when an OSError the student's code raised is the machine's; None if it is the student's."""
    if builtin not in OS_ERRORS or number not in MACHINE_ERRNOS or not filename:
        return None
    path = Path(filename)
    if not path.is_absolute():  # relative to the worker's own folder: the student's business
        return None
    if any(path == root or root in path.parents for root in (r.resolve() for r in own)):
        return None
    return f"{REGRADE}: {os.strerror(number)} on {filename}, a file the grader's environment provides"


def memory_fault() -> str:
    return f"{REGRADE}: the grading process itself ran out of memory (MemoryError)"


def oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has ended in this cgroup; None if unknown."""
    for counter in OOM_COUNTERS:
        try:
            for line in counter.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


def killed_by_the_machine(status: int | None, oom_before: int | None) -> str | None:
    """Whether a worker that died with wait status `status` was killed by the machine, not by its
    own code: the out-of-memory killer struck meanwhile, or a SIGKILL nobody can account for."""
    if status is None or not os.WIFSIGNALED(status) or os.WTERMSIG(status) != signal.SIGKILL:
        return None
    now = oom_kills()
    if now is not None and oom_before is not None:
        if now > oom_before:
            return f"{REGRADE}: the machine's out-of-memory killer ended the worker (SIGKILL)"
        return None  # the kernel killed nothing: the SIGKILL came from the worker's own code
    return f"{REGRADE}: the worker was killed with SIGKILL, by the machine (out of memory?) or by its own code"
