"""`assetfs mount --pid-file FILE` with a real background mount: the pid file is created
exclusively, a stale one (a pid whose process is gone) is replaced, and the pid file of a
running mount is refused with one line, exit 2 and nothing mounted or changed
(fusefs/pidfile.py). A file that is no pid file at all: tests/test_probe_findings.py."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from conftest import run_cli
from mounting import mounted_at, unmount


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), "the daemon did not exit after umount"


def end(store_root: Path, mountpoint: Path) -> None:
    run_cli(store_root, "umount", str(mountpoint), check=None)
    unmount(mountpoint)


def test_a_stale_pid_file_is_replaced_and_removed_at_exit(store_root: Path, tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait(timeout=30)
    pid_file, mountpoint = tmp_path / "mount.pid", tmp_path / "mnt"
    pid_file.write_text(f"{gone.pid}\n")
    mountpoint.mkdir()
    try:
        run_cli(store_root, "mount", "--pid-file", str(pid_file), str(mountpoint))
        pid = int(pid_file.read_text())
        assert pid != gone.pid and os.path.exists(f"/proc/{pid}"), "the pid file names the running daemon"
    finally:
        end(store_root, mountpoint)
    wait_gone(pid)
    assert not pid_file.exists(), "the daemon removes the pid file it wrote"


def test_the_pid_file_of_a_running_mount_is_refused(store_root: Path, tmp_path: Path) -> None:
    pid_file, first, second = tmp_path / "mount.pid", tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    try:
        run_cli(store_root, "mount", "--pid-file", str(pid_file), str(first))
        content = pid_file.read_bytes()
        pid = int(content)
        refused = run_cli(store_root, "mount", "--pid-file", str(pid_file), str(second), check=2)
        stderr = refused.stderr.decode()
        assert f"{pid_file} is the pid file of running process {pid}" in stderr, stderr
        assert len(stderr.splitlines()) == 1, stderr
        assert mounted_at(second) is None, "the refused mount mounts nothing"
        assert pid_file.read_bytes() == content, "the first mount's pid file stays as it was"
    finally:
        end(store_root, second)
        end(store_root, first)
    wait_gone(pid)
    assert not pid_file.exists()
