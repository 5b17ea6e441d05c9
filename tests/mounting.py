"""Real mounts for the tests: `assetfs mount --foreground` in a subprocess, waited for, and
always unmounted afterwards (fusermount3 -u, even when the test failed); only the process
started here is ever signalled. The `mounted` fixture (conftest.py) uses these; so do tests
that mount with options of their own."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from cas.store import Store
from conftest import ASSETFS, run_cli
from fusefs.mount import mounted_at

READY_TIMEOUT = 30.0


@dataclass
class Mount:
    path: Path
    store_root: Path
    process: subprocess.Popen
    log: Path
    expected_errors: tuple[str, ...] = ()  # log lines with these words are errors a test provoked

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def settle(self) -> None:
        """fsync of the mount's root waits until the files closed so far are committed (the
        mount commits them in the background): then the catalog shows them."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextmanager
    def store(self) -> Iterator[Store]:
        """The store, once the files closed through the mount so far are committed."""
        self.settle()
        with Store.open(self.store_root) as store:
            yield store


def start_mount(store_root: Path, mountpoint: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> Mount:
    mountpoint.mkdir(exist_ok=True)
    with open(log, "ab") as sink:
        process = subprocess.Popen(
            [ASSETFS, "--store", str(store_root), "mount", "--foreground", *args, str(mountpoint)],
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
    mount = Mount(mountpoint, store_root, process, log)
    deadline = time.monotonic() + READY_TIMEOUT
    while mounted_at(mountpoint) is None:
        if process.poll() is not None:
            raise AssertionError(f"the mount exited with {process.returncode}:\n{mount.log_text()}")
        if time.monotonic() > deadline:
            stop_mount(mount)
            raise AssertionError(f"the mount was not ready after {READY_TIMEOUT}s:\n{mount.log_text()}")
        time.sleep(0.05)
    return mount


def unmount(path: Path) -> None:
    """Unmount whatever is at `path`; lazily when it is busy, so nothing is left behind."""
    if mounted_at(path) is None:
        return
    if subprocess.run(["fusermount3", "-u", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["fusermount3", "-uz", str(path)], capture_output=True)


def stop_mount(mount: Mount) -> int:
    """Unmount and wait for the daemon; returns its exit code."""
    unmount(mount.path)
    try:
        return mount.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        mount.process.send_signal(signal.SIGTERM)
        try:
            return mount.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            mount.process.kill()
            return mount.process.wait()


def check_after_unmount(mount: Mount, exit_code: int) -> None:
    """The daemon exited cleanly, logged no unexpected error, left nothing in tmp/; fsck is clean."""
    log = mount.log_text()
    assert exit_code == 0, f"the mount daemon exited with {exit_code}:\n{log}"
    unexpected = "\n".join(line for line in log.splitlines()
                           if not any(expected in line for expected in mount.expected_errors))
    assert "Traceback" not in unexpected and " ERROR " not in unexpected, f"the mount logged unexpected errors:\n{log}"
    assert os.listdir(mount.store_root / "tmp") == [], "staging files were left in tmp/"
    fsck = run_cli(mount.store_root, "fsck", check=None)
    assert fsck.returncode == 0, f"fsck after the test:\n{fsck.stdout.decode()}{fsck.stderr.decode()}"


@contextmanager
def shared_mount(store_root: Path, log: Path, prefix: str) -> Iterator[Mount]:
    """An --allow-other mount at a mountpoint every user can reach (a test's tmp_path is
    private to root), unmounted and checked afterwards."""
    parent = Path(tempfile.mkdtemp(prefix=prefix))
    parent.chmod(0o755)
    mount = start_mount(store_root, parent / "mnt", log, "--allow-other")
    try:
        yield mount
    finally:
        code = stop_mount(mount)
        shutil.rmtree(parent, ignore_errors=True)
    check_after_unmount(mount, code)


def run(*command: str | Path, cwd: Path | None = None) -> str:
    """Run a tool; assert it exits 0; its stdout."""
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=cwd, timeout=240)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result.stdout


def put(store_root: Path, bucket: str, path: Path, *args: str) -> str:
    """`assetfs put`; the new object's id."""
    return run_cli(store_root, "put", bucket, str(path), *args).stdout.decode().split()[0]


def expect_errno(codes: set[int], action) -> None:
    with pytest.raises(OSError) as error:
        action()
    assert error.value.errno in codes, f"{error.value} (expected one of {[errno.errorcode[c] for c in codes]})"
