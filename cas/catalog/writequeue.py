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
"""

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

YIELD_LIMIT = 0.005  # seconds a background writer lets waiting writers go first before queuing anyway
_POLL = 0.0005  # how often a yielding background writer looks again


class Turn:
    """A held turn; the waiting file stays open to tell whether others wait for it."""

    def __init__(self, waiting: int) -> None:
        self._waiting = waiting

    def others_waiting(self) -> bool:
        """Whether a foreground writer waits for this turn to end."""
        return _held(self._waiting)


class WriteQueue:
    def __init__(self, database: Path) -> None:
        self.writer_path = database.with_name(database.name + "-writer")
        self.waiting_path = database.with_name(database.name + "-waiting")

    @contextmanager
    def turn(self, background: bool = False) -> Iterator[Turn]:
        """Hold the writer lock for the body; a `background` turn lets waiting writers go first."""
        waiting = _open(self.waiting_path)
        try:
            writer = _open(self.writer_path)
            try:
                if background:
                    self._let_waiting_writers_go(waiting)
                    fcntl.flock(writer, fcntl.LOCK_EX)
                else:
                    fcntl.flock(waiting, fcntl.LOCK_SH)
                    fcntl.flock(writer, fcntl.LOCK_EX)
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

    @staticmethod
    def _let_waiting_writers_go(waiting: int) -> None:
        deadline = time.monotonic() + YIELD_LIMIT
        while _held(waiting) and time.monotonic() < deadline:
            time.sleep(_POLL)


def _open(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _held(waiting: int) -> bool:
    """Whether anyone holds the waiting lock (tried without waiting, released at once)."""
    try:
        fcntl.flock(waiting, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(waiting, fcntl.LOCK_UN)
    return False
