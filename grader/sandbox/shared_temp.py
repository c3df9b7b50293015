"""What a worker's user left in the machine's shared temporary folders, removed between submissions.

Workers get TMPDIR in their own scratch folder (removed with it), but code may still write to
/tmp or /dev/shm by name, and the next submission's workers, running as the same user, could read
it. Between submissions the grading process removes everything that user owns in those folders.
Only for a user nothing else runs as (a bare uid given to one grading process: grade-all as root),
or it would remove someone else's files.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

SHARED_TEMP = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))


def sweep(uid: int, folders: tuple[Path, ...] = SHARED_TEMP) -> list[str]:
    """Remove what `uid` owns in `folders`, and in the world-writable folders inside them (where
    it may have made files); links are removed, never followed. Returns what could not be removed."""
    left: list[str] = []
    pending = [folder for folder in folders if folder.is_dir() and not folder.is_symlink()]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                if info.st_uid == uid:
                    if stat.S_ISDIR(info.st_mode):
                        shutil.rmtree(entry.path)  # fd-based on Linux: never follows a link inside
                    else:
                        os.unlink(entry.path)
                elif stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_IWOTH:
                    pending.append(Path(entry.path))
            except FileNotFoundError:
                continue
            except OSError as exc:
                left.append(f"{entry.path}: {exc.strerror or exc}")
    return left


def private_uid() -> int | None:
    """The uid this process's workers run as, when no one else runs as it ("#<uid>", set by grade-all)."""
    wanted = os.environ.get("MECHGRADE_WORKER_USER", "")
    if os.geteuid() == 0 and wanted.startswith("#") and wanted[1:].isdigit():
        return int(wanted[1:])
    return None
