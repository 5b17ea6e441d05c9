"""Who may read a store: its owner, or its owner and one group named at `assetfs init`
(docs/security.md).

The store's top folder is the guard: 0700, or 2750 with the group (setgid, so whatever is
made inside belongs to that group too). The files that hold secrets or the catalog
(`assetfs.toml`, `catalog.db*`, `mount.log`, the reserve) and the top-level folders get the
same access whatever the umask: 0600/0700, or 0640/2750. The write lock's files are always
0600 (cas/catalog/writequeue.py): a reader that could lock them could stop every writer.
"""

import grp
import os
import stat
from pathlib import Path

from cas.errors import BadInput

PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
GROUP_DIR, GROUP_FILE = 0o2750, 0o640


def group_id(name: str) -> int:
    """The id of the group called `name` (or given as a number); BadInput when there is none."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        pass
    if name.isdigit():
        return int(name)
    raise BadInput(f"--group: no such group {name!r}")


def make_root(root: Path, gid: int | None) -> None:
    """Give the store's top folder its access: the owner's alone, or also `gid`'s to read."""
    try:
        if gid is not None:
            os.chown(root, -1, gid)
        os.chmod(root, PRIVATE_DIR if gid is None else GROUP_DIR)
    except PermissionError:
        raise BadInput(f"cannot give {root} to group {gid}: this user is not a member of it") from None


def shared_with(root: Path, gid: int) -> bool:
    """Whether the store's top folder lets group `gid` read it."""
    info = os.stat(root)
    return info.st_gid == gid and bool(info.st_mode & stat.S_IRGRP)


def file_mode(root: Path) -> int:
    """The mode of the store's own files: readable by the group only when the top folder is."""
    return GROUP_FILE if os.stat(root).st_mode & stat.S_IRGRP else PRIVATE_FILE


def dir_mode(root: Path) -> int:
    return GROUP_DIR if os.stat(root).st_mode & stat.S_IRGRP else PRIVATE_DIR


def create_file(path: Path, mode: int, data: bytes = b"") -> None:
    """A new file with exactly `mode` (the umask removes bits only at creation)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, mode)
        file.write(data)
