"""`assetfs mount --read-only` writes nothing (issue 8, point 15; docs/upgrade.md, "Read
commands write nothing"): no row in `mounts`, no liveness lock, no journal folder. So a
read-only PostgreSQL role can mount a store read-only, and so can a user who may only read
a SQLite store's files (a member of its group, in a private mount namespace whose /dev/fuse
that user may open, as tests/test_service_user.py does)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import nullcontext
from pathlib import Path

import pytest

from conftest import ASSETFS, run_cli
from helpers import READER_IN_GROUP, group_store, read_only_role
from fusefs.mount import mounted_at
from mounting import start_mount, stop_mount, unmount
from namespace import private_namespace
from test_service_user import fuse_device_for_users, open_python_to_users
from test_upgrade import tree_state

READY_TIMEOUT = 30.0


def named_file(root: Path) -> str:
    return run_cli(root, "put", "photos", "-", "--name", "a.txt", input=b"shown").stdout.decode().split()[0]


def test_a_read_only_mount_writes_nothing(store_root: Path, database_url: str | None, tmp_path: Path) -> None:
    """As the store's owner on SQLite, as a role that may only read on PostgreSQL."""
    object_id = named_file(store_root)
    with read_only_role(store_root, database_url) if database_url else nullcontext():
        before = tree_state(store_root)
        mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log", "--read-only")
        try:
            assert (mount.path / "photos" / "a.txt").read_bytes() == b"shown"
            assert os.getxattr(mount.path / "photos" / "a.txt", "user.assetfs.id").decode() == object_id
            assert os.listdir(mount.path / "photos" / ".by-id") == [object_id]
            with pytest.raises(OSError) as refused:
                (mount.path / "photos" / "b.txt").write_bytes(b"new")
            assert refused.value.errno == 30  # EROFS
            for path in (mount.path, mount.path / "photos" / "a.txt"):  # nothing to make durable: at once
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        finally:
            code = stop_mount(mount)
        log = mount.log_text()
        assert code == 0 and "Traceback" not in log and " ERROR " not in log, log
        assert tree_state(store_root) == before


def test_a_reader_of_a_sqlite_store_mounts_it_read_only(open_folder: Path, tmp_path: Path) -> None:
    root = group_store(open_folder)
    named_file(root)
    before = tree_state(root)
    mountpoint, log = open_folder / "mnt", open_folder / "mount.log"
    mountpoint.mkdir()
    os.chown(mountpoint, 65534, 65534)  # nobody's: fusermount3 mounts only on a folder its user may write
    default_log = subprocess.run([*READER_IN_GROUP, ASSETFS, "--store", str(root), "mount", "--read-only",
                                  str(mountpoint)], capture_output=True, timeout=60, cwd="/")
    said = default_log.stderr.decode()  # it may not write <store>/mount.log: says what to give instead
    assert default_log.returncode == 2 and said.count("\n") == 1 and "--log-file" in said, said
    with private_namespace() as namespace:
        fuse_device_for_users(namespace, tmp_path)
        open_python_to_users(namespace, tmp_path)
        with open(log, "wb") as sink:
            process = subprocess.Popen(
                ["nsenter", f"--target={namespace.pid}", "--mount", "--", *READER_IN_GROUP, ASSETFS, "--store",
                 str(root), "mount", "--read-only", "--foreground", str(mountpoint)],
                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd="/")
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while not any(line.split()[4] == str(mountpoint) for line in namespace.mountinfo().splitlines()):
                assert process.poll() is None, f"the mount exited with {process.returncode}:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"no mount after {READY_TIMEOUT}s:\n{log.read_text()}"
                time.sleep(0.05)
            read = namespace.run("cat", mountpoint / "photos" / "a.txt", user="nobody")
            assert read.stdout == "shown"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = log.read_text()
    assert "Traceback" not in text and " ERROR " not in text, text
    assert tree_state(root) == before


def test_a_read_only_mount_runs_no_collector(store_root: Path, tmp_path: Path) -> None:
    """--read-only with --gc (or -o ro,gc) is refused in one line: the collector writes."""
    (tmp_path / "mnt").mkdir()
    before = tree_state(store_root)
    try:
        result = run_cli(store_root, "mount", "--read-only", "--gc", str(tmp_path / "mnt"), check=None)
        mounted = mounted_at(tmp_path / "mnt")
    finally:
        unmount(tmp_path / "mnt")  # what an accepted one would have left
    line = result.stderr.decode()
    assert result.returncode == 2 and line.count("\n") == 1 and "collector" in line, line
    assert mounted is None and tree_state(store_root) == before

