"""`assetfs umount` unmounts assetfs mounts only (issue 11, finding 11): a tmpfs at the path is
refused in one line (exit code 2) and stays mounted with its files; a stale assetfs mount, whose
daemon died, is still cleared."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_cli
from fusefs.mount import FSTYPE, mounted_at
from helpers import small_tmpfs
from mounting import expect_errno, start_mount, unmount
from test_cli import assert_error

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs mounted for this test, and unmounted after it whatever happened."""
    with small_tmpfs(tmp_path / "tmpfs", "1m") as path:
        yield path


NO_STORE = Path("/nonexistent-assetfs-store")  # umount needs none; the checks come before a store is opened


def test_umount_refuses_a_tmpfs_and_leaves_it_mounted(tmpfs: Path) -> None:
    (tmpfs / "precious.txt").write_text("keep me")
    line = assert_error(run_cli(NO_STORE, "umount", str(tmpfs), check=None), 2)
    assert "not an assetfs mount" in line and "tmpfs" in line, line
    assert mounted_at(tmpfs) == "tmpfs"
    assert (tmpfs / "precious.txt").read_text() == "keep me"


def test_mount_over_a_tmpfs_is_refused_without_suggesting_umount(tmpfs: Path, store_root: Path) -> None:
    line = assert_error(run_cli(store_root, "mount", str(tmpfs), check=None), 2)
    assert "assetfs umount" not in line and "tmpfs" in line, line
    assert mounted_at(tmpfs) == "tmpfs"


def test_umount_of_nothing_mounted_is_bad_input(tmp_path: Path) -> None:
    line = assert_error(run_cli(NO_STORE, "umount", str(tmp_path), check=None), 2)
    assert "nothing is mounted" in line


def test_umount_clears_a_stale_assetfs_mount(store_root: Path, tmp_path: Path) -> None:
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        assert mounted_at(mount.path) == FSTYPE
        mount.process.send_signal(signal.SIGKILL)  # the daemon this test started
        mount.process.wait(timeout=30)
        expect_errno({errno.ENOTCONN}, lambda: os.listdir(mount.path))
        run_cli(store_root, "umount", str(mount.path))
        assert mounted_at(mount.path) is None
    finally:
        unmount(mount.path)


def test_a_restart_with_clear_stale_mounts_over_a_dead_daemons_mount(store_root: Path, tmp_path: Path) -> None:
    """What the mount unit's `Restart=on-failure` does after the daemon died: the stale mount is
    refused by a plain `mount`, and `--clear-stale` unmounts it and mounts again, with what
    was closed before the crash."""
    first = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        (first.path / "docs").mkdir()
        (first.path / "docs" / "a.txt").write_bytes(b"closed before the crash")
        first.process.send_signal(signal.SIGKILL)  # the daemon this test started
        first.process.wait(timeout=30)
        expect_errno({errno.ENOTCONN}, lambda: os.listdir(first.path))
        refused = run_cli(store_root, "mount", str(first.path), check=2).stderr.decode()
        assert "stale mount" in refused and refused.count("\n") == 1
        run_cli(store_root, "mount", "--clear-stale", str(first.path))  # returns once the new mount answers
        try:
            assert (first.path / "docs" / "a.txt").read_bytes() == b"closed before the crash"
        finally:
            run_cli(store_root, "umount", str(first.path))
    finally:
        unmount(first.path)


@pytest.mark.skipif(os.geteuid() != 0, reason="root unmounts with umount2(2), whose errno says busy")
def test_umount_of_a_busy_mount_says_busy_and_leaves_it_mounted(store_root: Path, tmp_path: Path) -> None:
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        (mount.path / "docs").mkdir()
        held = open(mount.path / "docs" / "open.txt", "wb")
        try:
            held.write(b"still open")
            held.flush()
            line = assert_error(run_cli(store_root, "umount", str(mount.path), check=None), 75)
            assert "is busy" in line and "close the files" in line, line
            assert mounted_at(mount.path) == FSTYPE and mount.process.poll() is None
        finally:
            held.close()
        run_cli(store_root, "umount", str(mount.path))
        assert mounted_at(mount.path) is None
        assert mount.process.wait(timeout=30) == 0
    finally:
        unmount(mount.path)
    stored = json.loads(run_cli(store_root, "stat", "--json", "docs/open.txt").stdout)
    assert run_cli(store_root, "cat", stored["id"]).stdout == b"still open"
