"""Landlock: how a worker of an ordinary user (not root) confines itself before student code runs.

As root, a worker runs as a user of its own and the answers are covered (grader.sandbox.hiding).
An ordinary user has no other uid to give it: the worker runs as the instructor, who owns the
class's results. Linux's Landlock lets any process give up access for good, for itself and every
process it starts: the worker, right before it serves student code, keeps only the folders listed
in a `Policy` (read: Python, its libraries, the grader, the model; write: its scratch folder) and
loses the rest of the file system, TCP (ABI 4), and, from ABI 6, the right to signal or reach
through abstract unix sockets any process outside its own domain (the grader, the template,
another student's worker). Landlock also keeps it from ptracing those, and so from their
/proc/PID/mem, /proc/PID/cwd and /proc/PID/fd.

``MECHGRADE_LANDLOCK=off`` turns it off (an operator's escape hatch; the tests use it).
"""

from __future__ import annotations

import ctypes
import os
import platform
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

ENV_LANDLOCK = "MECHGRADE_LANDLOCK"
CLASS_ABI = 6  # grading a class as an ordinary user: signals scoped, so no worker stops another's
LINUX = {1: "5.13", 2: "5.19", 3: "6.2", 4: "6.7", 5: "6.10", 6: "6.12", 7: "6.15"}  # the first with each ABI
CONFINE_FAILED = 71  # a worker's exit status when it could not confine itself

# Since Linux 5.1 new system calls have one number on every architecture but alpha.
_SYSCALLS = {"x86_64": 444, "aarch64": 444, "arm64": 444, "riscv64": 444, "ppc64le": 444, "s390x": 444}
_FIRST = _SYSCALLS.get(platform.machine(), -1)
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = (_FIRST, _FIRST + 1, _FIRST + 2) if _FIRST > 0 else (-1, -1, -1)
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# File-system rights, by the ABI that added them.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_BY_ABI = {1: (1 << 13) - 1, 2: REFER, 3: TRUNCATE, 5: IOCTL_DEV}
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # all a rule on a file may grant
_NET_TCP = 0b11  # bind and connect (ABI 4)
_SCOPED = 0b11  # abstract unix sockets and signals (ABI 6)

READ = EXECUTE | READ_FILE | READ_DIR
DEVICE = READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV

# Looked up once, here: a process forked from one that runs threads must not enter the dynamic
# loader (see grader.sandbox.hiding), and `restrict` runs right after a fork.
_LIBC = ctypes.CDLL(None, use_errno=True)
_syscall, _prctl = _LIBC.syscall, _LIBC.prctl
_syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class LandlockError(RuntimeError):
    """The worker could not confine itself (the message says which step failed and why)."""


@dataclass(frozen=True)
class Policy:
    """What a confined worker keeps: paths it may read (and run), paths it may change, device files."""

    read: list[str] = field(default_factory=list)
    write: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)


def abi() -> int:
    """This kernel's Landlock ABI version; 0 where there is none (or it is turned off)."""
    if os.environ.get(ENV_LANDLOCK, "").strip().lower() in ("off", "0", "no") or _CREATE_RULESET < 0:
        return 0
    version = _syscall(_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    return max(int(version), 0)


_works: dict[int, bool] = {}


def unavailable(needed: int = 1) -> str | None:
    """None when a worker can confine itself here with ABI `needed` or later; else why not. The
    first answer comes from a throwaway child that confines itself (a container's seccomp filter
    may answer the version query and refuse the rest)."""
    version = abi()
    if version == 0:
        off = os.environ.get(ENV_LANDLOCK, "").strip()
        if off:
            return f"Landlock is turned off ({ENV_LANDLOCK}={off})"
        if _CREATE_RULESET < 0:
            return f"Landlock's system calls are not known to this grader on {platform.machine()}"
        return "this kernel has no Landlock (Linux 5.13 or later, with lsm=landlock)"
    if version < needed:
        return (f"this kernel's Landlock is ABI {version}; ABI {needed} or later is needed "
                f"(Linux {LINUX.get(needed, '?')} or later)")
    if version not in _works:
        _works[version] = _probe()
    if not _works[version]:
        return "Landlock is present but a process could not confine itself (a container's seccomp filter?)"
    return None


def _probe() -> bool:
    pid = os.fork()
    if pid == 0:  # only libc calls here: safe after a fork from a process that runs threads
        try:
            restrict(Policy(read=["/"]))
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def restrict(policy: Policy) -> int:
    """Confine this process, and every process it starts, for good; returns the ABI used."""
    version = abi()
    if version == 0:
        raise LandlockError(unavailable() or "no Landlock")
    handled = 0
    for since, rights in _FS_BY_ABI.items():
        handled |= rights if version >= since else 0
    attr = _RulesetAttr(handled, _NET_TCP if version >= 4 else 0, _SCOPED if version >= 6 else 0)
    size = 8 if version < 4 else 16 if version < 6 else 24  # the fields this ABI knows
    ruleset = _syscall(_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        raise LandlockError(f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}")
    try:
        for paths, rights in ((policy.read, READ), (policy.write, handled), (policy.devices, DEVICE)):
            _allow(ruleset, paths, rights & handled)
        if _prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise LandlockError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
        if _syscall(_RESTRICT_SELF, ruleset, 0) != 0:
            raise LandlockError(f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return version


def _allow(ruleset: int, paths: Iterable[str], rights: int) -> None:
    """A rule per path that exists; a file gets only the rights a file can have."""
    for path in paths:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # nothing there to grant: the worker cannot reach it either
        try:
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            rule = _PathBeneathAttr(rights if is_dir else rights & _FILE_ONLY, fd)
            if _syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                raise LandlockError(f"landlock_add_rule for {path} failed: {os.strerror(ctypes.get_errno())}")
        finally:
            os.close(fd)
