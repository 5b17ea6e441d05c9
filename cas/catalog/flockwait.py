"""flock(2) with a deadline (the write queue's wait, cas/catalog/writequeue.py).

flock has no timeout. A blocking flock is woken by the kernel the moment the lock is free,
which matters to a put that waits behind the collector (docs/concurrency.md, "Waiting for
the write lock"), but only a signal ends it early, and Python retries a call a signal
interrupted unless the signal's handler raises, which it runs in the main thread only. So:

- in the main thread, when no one else uses SIGALRM, the wait blocks; a watchdog thread
  sends SIGALRM to this thread (pthread_kill: not to another thread of the process) at the
  deadline, and the handler raises, which ends the flock;
- elsewhere (the mount's worker threads), the lock is tried without blocking, `_STEP` apart
  at first, later a tenth of the time waited so far apart: such a wait ends up to about 10%
  after the lock is free.
"""

import fcntl
import os
import signal
import threading
import time

_STEP = 0.00005  # seconds between two tries at first, in the polling wait


class _Deadline(Exception):
    """Raised by the SIGALRM handler to end a blocking flock."""


_waiting = False  # whether the main thread is in a blocking wait that SIGALRM should end


def _on_alarm(signum: int, frame: object) -> None:
    """The SIGALRM handler, installed once and left in place: a signal that comes late (after
    the wait it was meant for ended) is ignored rather than fatal."""
    if _waiting:
        raise _Deadline


class _Watchdog:
    """One thread per process that sends SIGALRM to a waiting thread at its deadline; arming
    it costs no thread start."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # the thread does not live on in a child

    def _reset(self) -> None:
        self._changed = threading.Condition()
        self._deadlines: dict[object, tuple[float, int]] = {}  # token → (deadline, thread ident)
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, ident: int) -> object:
        token = object()
        with self._changed:
            self._deadlines[token] = (deadline, ident)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="assetfs-flock-deadline", daemon=True)
                self._thread.start()
            self._changed.notify()
        return token

    def disarm(self, token: object) -> None:
        with self._changed:
            self._deadlines.pop(token, None)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for token, (deadline, ident) in list(self._deadlines.items()):
                    if deadline <= now:
                        del self._deadlines[token]
                        signal.pthread_kill(ident, signal.SIGALRM)
                earliest = min((deadline for deadline, _ in self._deadlines.values()), default=None)
                self._changed.wait(None if earliest is None else earliest - now)


_watchdog = _Watchdog()


def _try(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_until(fd: int, operation: int, deadline: float) -> bool:
    """Take the flock `operation` on `fd`; False once `deadline` (time.monotonic) has passed
    without it."""
    if _try(fd, operation):
        return True
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGALRM) in (
            signal.SIG_DFL, _on_alarm):
        try:
            return _blocking(fd, operation, deadline)
        except _Deadline:  # at the deadline, or just after the lock was had: then keep it
            return _try(fd, operation)
    return _polling(fd, operation, deadline)


def _blocking(fd: int, operation: int, deadline: float) -> bool:
    global _waiting
    signal.signal(signal.SIGALRM, _on_alarm)
    token = _watchdog.arm(deadline, threading.get_ident())
    _waiting = True
    try:
        fcntl.flock(fd, operation)
        return True
    finally:
        _waiting = False
        _watchdog.disarm(token)


def _polling(fd: int, operation: int, deadline: float) -> bool:
    started = time.monotonic()
    while True:
        if _try(fd, operation):
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        time.sleep(min(max(_STEP, (now - started) / 10), deadline - now))
