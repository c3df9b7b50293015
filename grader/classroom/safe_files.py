"""Reading a class's files as their owner could, never more: no link followed, no special file
opened, nothing read past a limit.

grade-all usually runs as root, so file permissions do not stop it from reading anything. So every
path is opened one component at a time, relative to its folder's descriptor, with O_NOFOLLOW: a
symbolic link anywhere (even one swapped in after a check) is refused by the kernel. Files are
opened with O_NONBLOCK and checked with fstat before any read, so a FIFO never blocks and a device
is never read. A file with another hard link is refused (it may be someone else's file), and so is
a file or folder the owner of the submission's entry could not read by its permission bits.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterator
from dataclasses import dataclass

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Refused(ValueError):
    """A path that is not read; the message says why, for the student's report."""


def kind_of(mode: int) -> str | None:
    """What a special file is, in words; None for a regular file or a folder."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link (links are not followed)"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


@dataclass(frozen=True)
class Owner:
    """The user a submission's entry belongs to: staging reads only what this user could read."""

    uid: int
    gids: frozenset[int]

    @classmethod
    def of(cls, info: os.stat_result) -> Owner:
        gids = {info.st_gid}
        try:
            account = pwd.getpwuid(info.st_uid)
            gids.update(os.getgrouplist(account.pw_name, account.pw_gid))
        except (KeyError, OSError):
            pass  # no account: its own group only
        return cls(info.st_uid, frozenset(gids))

    @classmethod
    def anyone(cls) -> Owner:
        """For what is ours already (a zip's contents): root's view, no permission check."""
        return cls(0, frozenset())

    def may(self, info: os.stat_result, bits: int) -> bool:
        """Whether this user has `bits` (4: read, 1: search) on a file with `info`, by its mode."""
        if self.uid == 0:
            return True
        mode = info.st_mode
        if info.st_uid == self.uid:
            granted = (mode >> 6) & 7
        elif info.st_gid in self.gids:
            granted = (mode >> 3) & 7
        else:
            granted = mode & 7
        return granted & bits == bits

    def check(self, info: os.stat_result, shown: str) -> None:
        """Refuse what is not a plain folder or a plain, singly linked file its owner may read."""
        special = kind_of(info.st_mode)
        if special:
            raise Refused(f"{shown} is {special}; skipped")
        if stat.S_ISDIR(info.st_mode):
            if not self.may(info, 5):
                raise Refused(f"{shown}/ cannot be read by its owner; skipped")
        elif info.st_nlink > 1:
            raise Refused(f"{shown} is a hard link to a file elsewhere; skipped")
        elif not self.may(info, 4):
            raise Refused(f"{shown} cannot be read by its owner; skipped")


def open_dir(parent: int, name: str) -> int:
    """A descriptor of folder `name` in `parent`; an OSError (ELOOP, ENOTDIR) if it is a link or no folder."""
    return os.open(name, DIR_FLAGS, dir_fd=parent)


def open_beneath(root: int, parts: tuple[str, ...], owner: Owner, shown: str) -> int:
    """Open the regular file at `parts` below the folder `root`, no link followed on the way,
    checked against `owner`; the caller closes it."""
    fds: list[int] = []
    try:
        parent = root
        for part in parts[:-1]:
            parent = open_dir(parent, part)
            fds.append(parent)
            owner.check(os.fstat(parent), shown)
        fd = os.open(parts[-1], FILE_FLAGS, dir_fd=parent)
    except OSError as exc:
        raise Refused(f"{shown} cannot be opened ({exc.strerror or exc}; links are not followed); skipped") from None
    finally:
        for opened in fds:
            os.close(opened)
    try:
        owner.check(os.fstat(fd), shown)
    except Refused:
        os.close(fd)
        raise
    return fd


def read_limited(fd: int, limit: int, shown: str) -> bytes:
    """Everything from `fd` (then closed), or Refused if it holds more than `limit` bytes."""
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise Refused(f"{shown} is {size / 2**20:.1f} MiB, over the {limit / 2**20:g} MiB limit; not read")
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # it grew while we read
            raise Refused(f"{shown} is over the {limit / 2**20:g} MiB limit; not read")
        return b"".join(chunks)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Found:
    """One entry a walk met: a regular file (with its size) or a folder."""

    parts: tuple[str, ...]
    is_dir: bool
    size: int = 0


def walk(root: int, owner: Owner, skip: set[str], max_depth: int, max_entries: int,
         shown: str) -> Iterator[Found | Refused]:
    """Every folder and regular file below `root` (a descriptor), sorted, without following links;
    what is skipped comes as a Refused, in order. Hidden names and `skip` are passed over silently;
    folders deeper than `max_depth` are not entered. Raises Refused past `max_entries` entries."""
    seen = 0
    stack: list[tuple[tuple[str, ...], int]] = [((), os.dup(root))]
    try:
        while stack:
            prefix, fd = stack.pop()
            folders: list[tuple[tuple[str, ...], int]] = []
            try:
                with os.scandir(fd) as listing:
                    names = sorted(entry.name for entry in listing)
                for name in names:
                    if name in skip or name.startswith("."):
                        continue
                    seen += 1
                    if seen > max_entries:
                        raise Refused(f"{shown} holds over {max_entries} files and folders; not graded")
                    parts = (*prefix, name)
                    where = "/".join((shown.rstrip("/"), *parts))
                    try:
                        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                        owner.check(info, where)
                        if stat.S_ISDIR(info.st_mode) and len(parts) < max_depth:
                            folders.append((parts, open_dir(fd, name)))
                    except Refused as refused:
                        yield refused
                        continue
                    except OSError as exc:
                        yield Refused(f"{where} cannot be opened ({exc.strerror or exc}); skipped")
                        continue
                    yield Found(parts, stat.S_ISDIR(info.st_mode), 0 if stat.S_ISDIR(info.st_mode) else info.st_size)
            except BaseException:
                for _, opened in folders:
                    os.close(opened)
                raise
            finally:
                os.close(fd)
            stack.extend(reversed(folders))
    finally:
        for _, fd in stack:
            os.close(fd)
