"""The store's own room on a full disk (docs/security.md, "A full disk").

SQLite cannot even open its catalog on a 100% full filesystem: a reader needs room for the
WAL's index (`catalog.db-shm`), and `rm` or the collector need room for the WAL itself. So a
store with a SQLite catalog keeps `<store>/reserve`, a file of `disk_reserve` bytes with its
blocks allocated. A command that opens the store when less than that is free deletes it,
and works in the room it leaves; closing the store takes the room back when it is free (when
the command, `gc` or `trash purge`, freed space, or SQLite gave its files back). A full disk
so still lets every command read, and `rm`, `trash purge` and `gc` free space.
"""

import os
from pathlib import Path

RESERVE_NAME = "reserve"


def free_bytes(root: Path) -> int:
    info = os.statvfs(root)
    return info.f_bavail * info.f_frsize


def release_if_low(root: Path, size: int) -> None:
    """Give the reserve's room back to the filesystem when less than `size` bytes are free."""
    if size <= 0:
        return
    try:
        if free_bytes(root) < size:
            (root / RESERVE_NAME).unlink(missing_ok=True)
    except OSError:
        pass  # opening the catalog says what is wrong with the store


def keep(root: Path, size: int) -> None:
    """Make the reserve `size` bytes again if it is missing and that much is free; all or
    nothing (a partial one is removed). Never fails: it is called while closing the store."""
    path = root / RESERVE_NAME
    if size <= 0 or path.exists():
        return
    partial = root / f"{RESERVE_NAME}.partial"
    try:
        if free_bytes(root) < size:
            return
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
        os.rename(partial, path)
    except OSError:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass
