"""The queue in front of SQLite's write lock (docs/concurrency.md, "Waiting for the write lock").

A writer that finds SQLite's database locked sleeps and tries again (the busy handler: 1, 2,
5, … up to 100 ms at a time), and a writer that commits and begins again at once takes the
lock back before the sleeper wakes. The collector's batches do just that, so a put beside
them could wait for many batches. Hence two lock files beside the database, locked with
flock(2), which wakes a waiter the moment the lock is free:

- `<database>-writer`: taken exclusively by every write transaction before `BEGIN
  IMMEDIATE`, released after its commit or rollback. Writers queue here, in the kernel.
- `<database>-waiting`: held shared by a foreground writer while it waits for its turn.
  A background writer (the collector) takes its turn only when no one holds it (giving up
  after `YIELD_LIMIT`, so that writers that never stop queuing cannot stall it for good),
  and ends its batch early once someone does (`Turn.others_waiting`).

flock locks belong to an open file description, not to a process: every turn opens the files
anew, so threads of one process queue like processes. A crashed writer's locks go with it.

No writer waits without limit: a turn not had within the queue's `timeout` (the store's
`write_lock_timeout`) raises `Busy`; how a wait for flock(2), which has no timeout, is ended
is in cas/catalog/flockwait.py. The lock files are the
owner's alone (0600): another user who could open them could stop every writer.
"""

import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cas.catalog.flockwait import lock_until
from cas.durations import format_duration
from cas.errors import Busy

YIELD_LIMIT = 0.005  # seconds a background writer lets waiting writers go first before queuing anyway
_POLL = 0.0005  # how often a yielding background writer looks again
LOCK_FILE_MODE = 0o600
DEFAULT_TIMEOUT = 30.0


class Turn:
    """A held turn; the waiting file stays open to tell whether others wait for it."""

    def __init__(self, waiting: int) -> None:
        self._waiting = waiting

    def others_waiting(self) -> bool:
        """Whether a foreground writer waits for this turn to end."""
        return _held(self._waiting)


class WriteQueue:
    def __init__(self, database: Path, timeout: float = DEFAULT_TIMEOUT, create: bool = True) -> None:
        """`create=False` (a catalog opened read-only) leaves the lock files as they are."""
        self.writer_path = database.with_name(database.name + "-writer")
        self.waiting_path = database.with_name(database.name + "-waiting")
        self.timeout = timeout
        for path in (self.writer_path, self.waiting_path) if create else ():
            _make_private(path)

    @contextmanager
    def turn(self, background: bool = False) -> Iterator[Turn]:
        """Hold the writer lock for the body; a `background` turn lets waiting writers go first.
        `Busy` when the turn does not come within the timeout."""
        deadline = time.monotonic() + self.timeout
        waiting = _open(self.waiting_path)
        try:
            writer = _open(self.writer_path)
            try:
                if background:
                    self._let_waiting_writers_go(waiting)
                    self._lock(writer, fcntl.LOCK_EX, deadline)
                else:
                    self._lock(waiting, fcntl.LOCK_SH, deadline)
                    self._lock(writer, fcntl.LOCK_EX, deadline)
                    fcntl.flock(waiting, fcntl.LOCK_UN)
                try:
                    yield Turn(waiting)
                finally:
                    fcntl.flock(writer, fcntl.LOCK_UN)
            finally:
                os.close(writer)
        finally:
            os.close(waiting)

    def others_waiting(self) -> bool:
        """Whether a foreground writer waits for its turn now."""
        waiting = _open(self.waiting_path)
        try:
            return _held(waiting)
        finally:
            os.close(waiting)

    def _lock(self, fd: int, operation: int, deadline: float) -> None:
        if not lock_until(fd, operation, deadline):
            raise Busy(f"the catalog's write lock ({self.writer_path.name}) was not free within "
                       f"{format_duration(self.timeout)} (write_lock_timeout); nothing was changed, try again")

    @staticmethod
    def _let_waiting_writers_go(waiting: int) -> None:
        deadline = time.monotonic() + YIELD_LIMIT
        while _held(waiting) and time.monotonic() < deadline:
            time.sleep(_POLL)


def _open(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, LOCK_FILE_MODE)


def _make_private(path: Path) -> None:
    """Create the lock file 0600, or take group and others' access from one an older assetfs
    made 0644 (when this user owns it)."""
    try:
        fd = _open(path)
    except PermissionError:
        return  # a store this user may only read: its writes fail anyway
    try:
        info = os.fstat(fd)
        if stat.S_IMODE(info.st_mode) != LOCK_FILE_MODE and info.st_uid == os.geteuid():
            os.fchmod(fd, LOCK_FILE_MODE)
    finally:
        os.close(fd)


def _held(waiting: int) -> bool:
    """Whether anyone holds the waiting lock (tried without waiting, released at once)."""
    try:
        fcntl.flock(waiting, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(waiting, fcntl.LOCK_UN)
    return False
