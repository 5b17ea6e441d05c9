"""A wait for the write queue's flock ends at its deadline, in the main thread (a blocking
flock ended by SIGALRM) and in other threads (polling); a SIGALRM that comes after the wait
is ignored, not fatal (cas/catalog/flockwait.py). Run in a child process: pytest-timeout
owns SIGALRM in this one.
"""

import fcntl
import os
import subprocess
import sys
from pathlib import Path

WAITER = """
import fcntl, os, signal, sys, threading, time
from cas.catalog.flockwait import lock_until

fd = os.open(sys.argv[1], os.O_RDONLY)
print("main", lock_until(fd, fcntl.LOCK_EX, time.monotonic() + 0.2), flush=True)
results = []
thread = threading.Thread(target=lambda: results.append(lock_until(fd, fcntl.LOCK_EX, time.monotonic() + 0.2)))
thread.start()
thread.join()
print("thread", results[0], flush=True)
os.kill(os.getpid(), signal.SIGALRM)  # late: no wait is going on
time.sleep(0.1)
print("alive", flush=True)
"""


def test_a_wait_for_a_held_lock_ends_at_its_deadline(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    lock.touch()
    holder = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        result = subprocess.run([sys.executable, "-c", WAITER, str(lock)], capture_output=True, timeout=60,
                                cwd=Path(__file__).parent.parent)
    finally:
        os.close(holder)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split("\n") == ["main False", "thread False", "alive", ""]
