"""Whether syncfs(2) can be trusted to flush the store's filesystem (`[storage] syncfs`).

A local filesystem (ext4, XFS, btrfs) flushes everything on syncfs, so the store flushes a
batch of many files with one syncfs instead of one fsync each. A network or FUSE
filesystem may not: on ceph-fuse syncfs returns at once without flushing (the kernel's
FUSE has no sync_fs for it), NFS and CephFS's kernel client flush only what the client
holds. There the store fsyncs each file and folder, so what docs/design.md invariant 3
needs flushed before the commit is flushed (docs/concurrency.md, "Where syncfs cannot be
trusted").

`auto` looks up the store's filesystem type in /proc/self/mountinfo.
"""

from __future__ import annotations

import os
from pathlib import Path

SETTINGS = ("auto", "yes", "no")
UNTRUSTED_TYPES = frozenset({"ceph", "nfs", "nfs4", "cifs", "smb3", "9p", "virtiofs", "gpfs", "lustre"})
MOUNTINFO = Path("/proc/self/mountinfo")


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem that holds `path` (mountinfo's, e.g. "ext4",
    "fuse.ceph-fuse"), or None when it cannot be told."""
    target = os.path.realpath(path)
    best, best_type = "", None
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as mountinfo:
            for line in mountinfo:
                fields = line.split()
                if "-" not in fields:
                    continue
                separator = fields.index("-")
                if len(fields) < 5 or separator + 1 >= len(fields):
                    continue
                point = _unescape(fields[4])
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, best_type = point, fields[separator + 1]
    except OSError:
        return None
    return best_type


def syncfs_trusted(setting: str, path: Path) -> bool:
    """`yes`/`no` as configured; `auto`: trusted unless the filesystem is a network or FUSE one."""
    if setting != "auto":
        return setting == "yes"
    kind = filesystem_type(path)
    if kind is None:
        return False  # cannot tell: the safe way
    return not (kind in UNTRUSTED_TYPES or kind == "fuse" or kind.startswith("fuse."))


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field
