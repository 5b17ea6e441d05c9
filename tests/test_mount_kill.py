"""Killing the mount daemon (SIGKILL) in the middle of `cp -r` into the mount: after clearing
the stale mount and mounting again, every file that was closed before the kill is there and
identical, and `fsck --repair` leaves a clean store."""

from __future__ import annotations

import filecmp
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cas.store import Store
from conftest import run_cli
from fusefs.mount import mounted_at
from helpers import count
from mounting import start_mount, stop_mount, unmount

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]

FILES_BEFORE_KILL = 100  # committed objects to wait for before the kill
WAIT_LIMIT = 120.0  # a bound for that wait, not a speed assertion


def make_tree(root: Path) -> Path:
    """Small files in six folders, with two 24 MiB files among them, all of different content."""
    for folder in range(6):
        (root / f"folder {folder}").mkdir(parents=True)
        for index in range(100):
            (root / f"folder {folder}" / f"file {index:03d}.bin").write_bytes(os.urandom(16 * 1024))
        if folder in (2, 4):
            (root / f"folder {folder}" / "large.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    return root


def committed_names(store_root: Path) -> set[str]:
    with Store.open(store_root) as store:
        return {name for info in store.list("photos") for name in info.names}


def test_sigkill_mid_copy_loses_nothing_that_was_closed(store_root: Path, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "source")
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        (mount.path / "photos").mkdir()
        copier = subprocess.Popen(["cp", "-r", str(source), str(mount.path / "photos" / "copy")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + WAIT_LIMIT
            with Store.open(store_root) as store:
                while count(store, "objects") < FILES_BEFORE_KILL:
                    assert copier.poll() is None, "cp ended before the kill"
                    assert time.monotonic() < deadline, "the copy made no progress"
                    time.sleep(0.01)
            closed = committed_names(store_root)  # each of these was closed (committed) by now
            assert copier.poll() is None, "cp ended before the kill"
            os.kill(mount.process.pid, signal.SIGKILL)
            mount.process.wait(timeout=30)
        finally:
            copier.wait(timeout=120)
        assert copier.returncode != 0  # the rest of the copy failed against the dead mount
        assert mounted_at(mount.path) is not None  # stale: the daemon is gone, the mount is not
        run_cli(store_root, "umount", str(mount.path))
        assert mounted_at(mount.path) is None
    finally:
        unmount(mount.path)
        if mount.process.poll() is None:
            stop_mount(mount)

    again = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount2.log")
    try:
        copy = again.path / "photos"
        for name in closed:
            assert filecmp.cmp(source / Path(name).relative_to("copy"), copy / name, shallow=False), name
        unfinished = []
        for path in (copy / "copy").rglob("*"):
            if path.is_file() and not filecmp.cmp(source / path.relative_to(copy / "copy"), path, shallow=False):
                unfinished.append(path)
        assert len(unfinished) <= 1, unfinished  # cp had at most one file open at the kill...
        assert all(path.stat().st_size == 0 for path in unfinished)  # ...which shows empty, never torn
    finally:
        code = stop_mount(again)
    assert code == 0 and "Traceback" not in again.log_text()

    run_cli(store_root, "fsck", "--repair", "--orphan-grace", "0s", check=None)
    assert os.listdir(store_root / "tmp") == []
    fsck = run_cli(store_root, "fsck", check=None)
    assert fsck.returncode == 0, fsck.stdout.decode() + fsck.stderr.decode()
