"""The write-behind (docs/concurrency.md, "Write-behind"): files closed in the mount are
committed in the background. These tests hold closed files in the journal
(ASSETFS_WRITEBEHIND_GATHER_S) so that what happens before the commit is deterministic."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cas.store import Store
from mounting import Mount, check_after_unmount, start_mount, stop_mount

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]

HELD = {"ASSETFS_WRITEBEHIND_GATHER_S": "3600"}  # closed files wait until fsync or unmount


@pytest.fixture
def held_mount(store_root: Path, tmp_path: Path) -> Iterator[Mount]:
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log", env=HELD)
    try:
        (mount.path / "photos").mkdir()
        yield mount
    finally:
        code = stop_mount(mount)
    check_after_unmount(mount, code)


def named(store_root: Path) -> dict[str, str]:
    """name → content hash of every live object with a name."""
    with Store.open(store_root) as store:
        return {name: info.hash for info in store.list("photos") for name in info.names}


def journal_entries(store_root: Path) -> list[str]:
    return [entry.name for folder in (store_root / "tmp").glob("closed-*") for entry in folder.iterdir()]


def test_a_closed_file_reads_back_before_its_commit_and_fsync_commits_it(held_mount: Mount) -> None:
    path = held_mount.path / "photos" / "a.txt"
    path.write_bytes(b"first")
    assert path.read_bytes() == b"first" and path.stat().st_size == 5
    assert named(held_mount.store_root) == {} and len(journal_entries(held_mount.store_root)) == 1
    with open(path, "rb") as reader:
        os.fsync(reader.fileno())  # a read-only handle too: fsync waits for the file's commit
    assert set(named(held_mount.store_root)) == {"a.txt"}
    assert journal_entries(held_mount.store_root) == []


def test_only_the_newest_of_several_closes_is_committed(held_mount: Mount) -> None:
    path = held_mount.path / "photos" / "a.txt"
    path.write_bytes(b"one")
    with open(path, "ab") as appender:  # copy-on-write from the closed copy, not the (empty) object
        appender.write(b" two")
    path.write_bytes(b"three")
    assert path.read_bytes() == b"three"
    assert len(journal_entries(held_mount.store_root)) == 3
    held_mount.settle()
    with Store.open(held_mount.store_root) as store:
        [info] = list(store.list("photos"))
        assert info.names == ["a.txt"] and store.open_object(info.id).read() == b"three"
    assert journal_entries(held_mount.store_root) == []


def test_renamed_after_close_is_committed_under_its_new_name(held_mount: Mount) -> None:
    folder = held_mount.path / "photos"
    (folder / ".a.txt.tmp").write_bytes(b"renamed")  # rsync's way: write a temporary name, then rename
    os.utime(folder / ".a.txt.tmp", (1_600_000_000, 1_600_000_000))
    os.rename(folder / ".a.txt.tmp", folder / "a.txt")
    held_mount.settle()
    assert set(named(held_mount.store_root)) == {"a.txt"}
    assert (folder / "a.txt").stat().st_mtime == 1_600_000_000  # set after the close: kept


def test_removed_before_its_commit_stores_nothing(held_mount: Mount) -> None:
    path = held_mount.path / "photos" / "gone.txt"
    path.write_bytes(b"short-lived")
    path.unlink()
    held_mount.settle()
    assert named(held_mount.store_root) == {}
    with Store.open(held_mount.store_root) as store:
        assert list(store.list("photos")) == []


def test_a_failing_commit_is_kept_reported_by_fsync_and_retried(held_mount: Mount) -> None:
    """The blob tree made immutable (chattr +i, which binds root too): the commit cannot install
    the blob. fsync reports EIO, the file stays readable and in the journal; once the tree is
    writable again, the next fsync commits it."""
    blobs = held_mount.store_root / "blobs"
    path = held_mount.path / "photos" / "a.txt"
    path.write_bytes(b"content that cannot be installed yet")
    subprocess.run(["chattr", "+i", str(blobs)], check=True)
    try:
        with open(path, "rb") as reader:
            with pytest.raises(OSError) as error:
                os.fsync(reader.fileno())
        assert error.value.errno == errno.EIO
        assert path.read_bytes() == b"content that cannot be installed yet"
        assert named(held_mount.store_root) == {} and len(journal_entries(held_mount.store_root)) == 1
    finally:
        subprocess.run(["chattr", "-i", str(blobs)], check=True)
    with open(path, "rb") as reader:
        os.fsync(reader.fileno())
    assert set(named(held_mount.store_root)) == {"a.txt"}
    assert "could not commit" in held_mount.log_text()
    held_mount.expected_errors = ("could not commit",)
