"""SIGHUP reopens the mount's log file and leaves the mount alone, so that logrotate can
rotate it: docs/assetfs.logrotate, run by the real logrotate against a real background
mount started the way that file says. Every line carries an ISO 8601 time and a level."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_cli
from fusefs.mount import FSTYPE, mounted_at
from mounting import put, start_mount, stop_mount, unmount

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "assetfs.logrotate"
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR|DEBUG) assetfs\.[a-z.]+: ")


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_logrotate_rotates_the_log_and_the_mount_stays(store_root, tmp_path):
    logrotate = shutil.which("logrotate") or pytest.skip("logrotate is not installed (in scripts/test's packages)")
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o755)
    log, pid_file, mountpoint = log_dir / "mount.log", tmp_path / "mount.pid", tmp_path / "assets"
    mountpoint.mkdir()
    config = tmp_path / "assetfs.logrotate"
    config.write_text(EXAMPLE.read_text().replace("/var/log/assetfs/mount.log", str(log))
                      .replace("/run/assetfs-mount.pid", str(pid_file)))
    run_cli(store_root, "mount", "--log-file", str(log), "--pid-file", str(pid_file), str(mountpoint))
    pid = int(pid_file.read_text())
    rotated = log_dir / "mount.log.1"
    try:
        before = log.read_text()
        assert "mounted" in before
        result = subprocess.run([logrotate, "--force", "--state", str(tmp_path / "state"), str(config)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert rotated.read_text().startswith(before), "the old lines moved to mount.log.1"
        wait_for(lambda: log.exists() and "reopened" in log.read_text(), "SIGHUP did not reopen the log file")

        assert os.path.exists(f"/proc/{pid}") and mounted_at(mountpoint) == FSTYPE, "the mount stayed"
        source = tmp_path / "after.txt"
        source.write_text("written after the rotation\n")
        put(store_root, "docs", source)
        assert (mountpoint / "docs" / "after.txt").read_text() == "written after the rotation\n"
    finally:
        run_cli(store_root, "umount", str(mountpoint), check=None)
        unmount(mountpoint)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), "the daemon did not exit")
    new, old = log.read_text(), rotated.read_text()
    assert "unmounted" in new and "unmounted" not in old, "the daemon writes to the new file"
    for line in (new + old).splitlines():
        assert LINE.match(line), line
    assert " ERROR " not in new + old


def test_in_the_foreground_a_log_file_is_written_and_reopened_on_sighup(store_root, tmp_path):
    log, moved, output = tmp_path / "mount.log", tmp_path / "mount.log.old", tmp_path / "stderr.log"
    mount = start_mount(store_root, tmp_path / "mnt", output, "--log-file", str(log))
    try:
        wait_for(lambda: log.exists() and "mounted" in log.read_text(), "the log file got no lines")
        log.rename(moved)
        mount.process.send_signal(signal.SIGHUP)
        wait_for(lambda: log.exists() and "reopened" in log.read_text(), "SIGHUP did not reopen the log file")
        assert mount.process.poll() is None and mounted_at(mount.path) == FSTYPE
        assert os.listdir(mount.path) == [".trash"]
    finally:
        code = stop_mount(mount)
    assert code == 0
    assert "unmounted" in log.read_text() and "unmounted" not in moved.read_text()
    assert output.read_text() == "", "with --log-file, nothing goes to stderr"
