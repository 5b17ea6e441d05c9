"""Crash and pause points for the tests.

`ASSETFS_CRASH_AT=<point>` kills the process at that point: the tests run a put (or a GC
pass) in a subprocess with it set and check that whatever the kill leaves behind is only
orphans, which fsck and GC clean up.

`ASSETFS_PAUSE_AT=<point>@<marker file>` makes the process create the marker file at that
point and wait until the test removes it (at most PAUSE_LIMIT seconds), so that the test can
act at a known moment: truncate the file being stored, send a signal.

Unset, a point costs two comparisons.
"""

import os
import signal
import time
from pathlib import Path

CRASH_AT = os.environ.get("ASSETFS_CRASH_AT")
PAUSE_AT, _, PAUSE_MARKER = (os.environ.get("ASSETFS_PAUSE_AT") or "").rpartition("@")
PAUSE_LIMIT = 60.0


def crash_point(name: str) -> None:
    if CRASH_AT == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if PAUSE_AT == name:
        _pause(Path(PAUSE_MARKER))


def _pause(marker: Path) -> None:
    marker.touch()
    deadline = time.monotonic() + PAUSE_LIMIT
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


FAILING = frozenset(filter(None, os.environ.get("ASSETFS_FAIL", "").split(",")))


def failing(name: str) -> bool:
    """`ASSETFS_FAIL=<name>[,<name>…]` makes a capability fail as it does on filesystems
    that lack it, so its fallback is tested on the local disk: `tmpfile` (O_TMPFILE refused
    with EOPNOTSUPP, as on ceph-fuse)."""
    return name in FAILING
