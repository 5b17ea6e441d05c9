"""A put whose source changes under it, or that is stopped (issue 11, finding 17).

A large file whose content is stored already is only hashed, not copied; truncated while it
is hashed, the put ends with a clear one-line error (it used to die of SIGBUS, hashing it
through mmap) and stores nothing. A put ended by SIGTERM removes its staging file (it used to
stay in tmp/ for the orphan grace) and exits with 143 after one line; so does a get, which
leaves no partial file."""

import contextlib
import io
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cas.store import Store
from conftest import ASSETFS, run_cli
from helpers import snapshot
from test_cli import assert_error

pytestmark = pytest.mark.timeout(120)


def wait_for(condition, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def start_put(store_root: Path, *args: str, pause_at: str | None = None, marker: Path | None = None,
              stdin=subprocess.DEVNULL) -> subprocess.Popen:
    env = dict(os.environ)
    if pause_at is not None:
        env["ASSETFS_PAUSE_AT"] = f"{pause_at}@{marker}"
    return subprocess.Popen([ASSETFS, "--store", str(store_root), "put", *args], env=env, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finished(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_a_stored_file_truncated_while_it_is_hashed_is_a_clear_error(store_root: Path, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(8 * 1024 * 1024))
    run_cli(store_root, "put", "photos", str(source), "--name", "first.bin")
    with Store.open(store_root) as store:
        before = snapshot(store)
    marker = tmp_path / "paused"
    put = start_put(store_root, "photos", str(source), "--name", "second.bin", pause_at="put:hashing-stored",
                    marker=marker)
    try:
        wait_for(marker.exists, "the put to reach its hashing")
        os.truncate(source, 4096)  # after the put compared the first bytes and took the size
    finally:
        marker.unlink(missing_ok=True)
    result = finished(put)
    assert result.returncode != -signal.SIGBUS, "the put died of SIGBUS"
    line = assert_error(result, 1)
    assert "changed while" in line and "big.bin" in line, line
    with Store.open(store_root) as store:
        assert snapshot(store) == before


def test_sigterm_during_a_put_from_a_pipe_removes_its_staging_file(store_root: Path) -> None:
    read_end, write_end = os.pipe()
    put = start_put(store_root, "photos", "-", "--name", "piped.bin", stdin=read_end)
    os.close(read_end)
    try:
        os.write(write_end, os.urandom(64 * 1024))  # the put stages this, then waits for more
        wait_for(lambda: list((store_root / "tmp").iterdir()), "the staging file")
        put.send_signal(signal.SIGTERM)
        result = finished(put)
    finally:
        os.close(write_end)
    line = assert_error(result, 128 + signal.SIGTERM)
    assert "terminated" in line
    assert list((store_root / "tmp").iterdir()) == []
    assert run_cli(store_root, "ls").stdout == b""


def test_sigterm_between_staging_and_commit_removes_the_staged_file(store_root: Path, tmp_path: Path) -> None:
    source = tmp_path / "new.bin"
    source.write_bytes(os.urandom(100_000))
    marker = tmp_path / "paused"
    put = start_put(store_root, "photos", str(source), pause_at="put:staged", marker=marker)
    try:
        wait_for(marker.exists, "the put to stage its file")
        assert list((store_root / "tmp").iterdir()) != []
        put.send_signal(signal.SIGTERM)
        result = finished(put)
    finally:
        marker.unlink(missing_ok=True)
    assert_error(result, 128 + signal.SIGTERM)
    assert list((store_root / "tmp").iterdir()) == []
    assert run_cli(store_root, "ls").stdout == b""
    assert run_cli(store_root, "fsck", "--orphan-grace", "0s").returncode == 0


def test_sigterm_during_a_get_removes_its_partial_file(store_root: Path, tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(100_000))
    object_id = run_cli(store_root, "put", "photos", str(source)).stdout.split()[0].decode()
    out = tmp_path / "out"
    out.mkdir()
    marker = tmp_path / "paused"
    get = subprocess.Popen([ASSETFS, "--store", str(store_root), "get", object_id, "-o", str(out / "copy.bin")],
                           env={**os.environ, "ASSETFS_PAUSE_AT": f"get:copying@{marker}"},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(marker.exists, "the get to start copying")
        assert [path.name for path in out.iterdir()] == [".copy.bin.assetfs-partial"]
        get.send_signal(signal.SIGTERM)
        result = finished(get)
    finally:
        marker.unlink(missing_ok=True)
    assert_error(result, 128 + signal.SIGTERM)
    assert list(out.iterdir()) == []


def _blocked_signals(thread: threading.Thread) -> set[int]:
    """The signals `thread` blocks, from /proc (SigBlk: a hex mask, bit n-1 for signal n)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
    return {number for number in range(1, 65) if mask >> (number - 1) & 1}


class _WatchingSource(io.RawIOBase):
    """A stream of random bytes that, while it is read, records the helper threads alive and
    the signals each blocks."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.seen: dict[str, set[int]] = {}

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and thread.native_id is not None and thread.is_alive():
                with contextlib.suppress(FileNotFoundError, StopIteration):  # ended meanwhile
                    self.seen[thread.name] = _blocked_signals(thread)
        count = min(len(buffer), self.left, 1 << 20)
        buffer[:count] = os.urandom(count)
        self.left -= count
        return count


def test_helper_threads_of_a_put_leave_sigterm_and_sigint_to_the_main_thread(store: Store) -> None:
    """Issue 9, point 8: a put hashes in a second thread and loads libmagic in a third. A
    SIGTERM the kernel gave one of them would not interrupt the main thread's read from a
    pipe, and `assetfs put -` waited forever (1 in 8-25 tries); both block it and SIGINT."""
    source = _WatchingSource(24 * 1024 * 1024)

    store.put("photos", source, name="watched.bin")

    helpers = {name: blocked for name, blocked in source.seen.items() if name.startswith("assetfs-")}
    assert any(name.startswith("assetfs-hash") for name in helpers), source.seen
    for name, blocked in helpers.items():
        assert {signal.SIGTERM, signal.SIGINT} <= blocked, f"{name} takes SIGTERM or SIGINT"
    assert not {signal.SIGTERM, signal.SIGINT} & _blocked_signals(threading.main_thread())
