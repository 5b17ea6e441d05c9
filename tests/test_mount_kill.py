"""Killing the mount daemon (SIGKILL) in the middle of a copy into the mount: after clearing
the stale mount and mounting again, every file whose close() returned before the kill is there
and identical (most of them were still waiting for the write-behind to commit them: the new
mount commits them from the journal), and `fsck --repair` leaves a clean store. And a killed
mount's journal is reported by `fsck`, which commits it with `--repair`."""

from __future__ import annotations

import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cas.store import Store
from conftest import run_cli
from fusefs.mount import mounted_at
from mounting import start_mount, stop_mount, unmount

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]

FILES_BEFORE_KILL = 100  # closed files to wait for before the kill
WAIT_LIMIT = 120.0  # a bound for that wait, not a speed assertion

# Copies a tree file by file, like cp -r, and after each close() that returned writes the
# file's path (relative to the target) to stdout, unbuffered.
COPIER = """
import os, shutil, sys
source, target = sys.argv[1], sys.argv[2]
for folder, _, files in sorted(os.walk(source)):
    os.makedirs(os.path.join(target, os.path.relpath(folder, source)), exist_ok=True)
    for name in sorted(files):
        relative = os.path.relpath(os.path.join(folder, name), source)
        with open(os.path.join(source, relative), "rb") as reader, open(os.path.join(target, relative), "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
        print(relative, flush=True)
"""


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
    closed_log = tmp_path / "closed.txt"
    try:
        (mount.path / "photos").mkdir()
        with open(closed_log, "wb") as sink:
            copier = subprocess.Popen([sys.executable, "-c", COPIER, str(source), str(mount.path / "photos" / "copy")],
                                      stdout=sink, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + WAIT_LIMIT
            while len(closed_log.read_text().splitlines()) < FILES_BEFORE_KILL:
                assert copier.poll() is None, "the copy ended before the kill"
                assert time.monotonic() < deadline, "the copy made no progress"
                time.sleep(0.01)
            os.kill(mount.process.pid, signal.SIGKILL)
            mount.process.wait(timeout=30)
        finally:
            copier.wait(timeout=120)
        assert copier.returncode != 0  # the rest of the copy failed against the dead mount
        closed = {f"copy/{line}" for line in closed_log.read_text().splitlines()}  # close() returned for each
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


def test_a_killed_mounts_journal_is_reported_by_fsck_and_committed_by_repair(store_root: Path,
                                                                              tmp_path: Path) -> None:
    source = make_tree(tmp_path / "source")
    held = {"ASSETFS_WRITEBEHIND_GATHER_S": "3600"}  # closed files wait in the journal
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log", env=held)
    try:
        (mount.path / "photos").mkdir()
        subprocess.run(["cp", "-r", str(source / "folder 0"), str(mount.path / "photos" / "kept")], check=True)
        os.kill(mount.process.pid, signal.SIGKILL)
        mount.process.wait(timeout=30)
    finally:
        unmount(mount.path)
    assert committed_names(store_root) == set()  # nothing was committed before the kill

    report = run_cli(store_root, "fsck", check=None)
    assert report.returncode != 0
    assert "uncommitted_closed" in report.stdout.decode() and "100 files closed" in report.stdout.decode()
    assert committed_names(store_root) == set()  # fsck without --repair changes nothing

    run_cli(store_root, "fsck", "--repair", check=None)
    assert committed_names(store_root) == {f"kept/file {index:03d}.bin" for index in range(100)}
    with Store.open(store_root) as store:
        for info in store.list("photos"):
            [name] = info.names
            assert store.open_object(info.id).read() == (source / "folder 0" / Path(name).name).read_bytes()
    assert os.listdir(store_root / "tmp") == []
    fsck = run_cli(store_root, "fsck", check=None)
    assert fsck.returncode == 0, fsck.stdout.decode() + fsck.stderr.decode()
