"""Crash points for the crash tests: `ASSETFS_CRASH_AT=<point>` kills the process there.

The tests run a put (or a GC pass) in a subprocess with this variable set and check that
whatever the kill leaves behind is only orphans, which fsck and GC clean up. Unset, a crash
point costs one dictionary lookup.
"""

import os
import signal

CRASH_AT = os.environ.get("ASSETFS_CRASH_AT")


def crash_point(name: str) -> None:
    if CRASH_AT == name:
        os.kill(os.getpid(), signal.SIGKILL)


FAILING = frozenset(filter(None, os.environ.get("ASSETFS_FAIL", "").split(",")))


def failing(name: str) -> bool:
    """`ASSETFS_FAIL=<name>[,<name>…]` makes a capability fail as it does on filesystems
    that lack it, so its fallback is tested on the local disk: `tmpfile` (O_TMPFILE refused
    with EOPNOTSUPP, as on ceph-fuse)."""
    return name in FAILING
