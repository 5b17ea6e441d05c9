"""Which thread takes SIGINT and SIGTERM, and when (the CLI's `Terminated`, cas/cli.py).

A signal sent to the process goes to any one of its threads that does not block it. The CLI
turns SIGTERM and SIGINT into exceptions raised in the main thread, which unwind what it was
doing and remove what it staged. Taken by a helper thread (hashing beside a copy, loading
libmagic), the signal would not interrupt the main thread: a put reading a pipe that never
ends would wait forever. So helper threads are started with those signals blocked (`held`:
a new thread inherits the mask of the thread that starts it). Threads started by libraries
(psycopg's pool) may still take them; the handler then runs in the main thread at its next
Python instruction, so staging arms a file's removal before it makes the file
(`BlobTree._new_staged`).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = {signal.SIGINT, signal.SIGTERM}


def hold() -> set[signal.Signals]:
    """Block the handled signals in this thread (they wait, pending); returns the mask that
    `restore` puts back."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)


def restore(previous: set[signal.Signals]) -> None:
    """Put back the mask `hold` returned; a signal that came meanwhile is handled now."""
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def held() -> Iterator[None]:
    """The handled signals blocked in this thread for the block's duration: threads started
    inside keep them blocked for good."""
    previous = hold()
    try:
        yield
    finally:
        restore(previous)
