"""Issue 11, finding 22: where syncfs cannot be trusted (CephFS, NFS, FUSE) every file and
folder is fsynced, and where O_TMPFILE fails the mount stages in named files. Both fallbacks
are forced on the local disk: `[storage] syncfs = "no"` and `ASSETFS_FAIL=tmpfile`; the
flushes are checked by what the store recorded it synced (`blobtree.SyncTrace`)."""

from __future__ import annotations

import io
import re
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cas.blobtree import SyncTrace
from cas.durability import filesystem_type, syncfs_trusted
from cas.store import PutRequest, Store
from conftest import run_cli
from mounting import check_after_unmount, start_mount, stop_mount

FILES = 20  # more than PendingSync.SYNCFS_ABOVE: one syncfs would do where it is trusted


def _set_syncfs(store_root: Path, value: str) -> None:
    """Set `[storage] syncfs` (a store made before the setting existed has no [storage])."""
    config = store_root / "assetfs.toml"
    text = config.read_text()
    line = f'syncfs = "{value}"'
    config.write_text(re.sub(r'(?m)^syncfs = .*$', line, text) if "[storage]" in text else f"{text}\n[storage]\n{line}\n")


@pytest.fixture
def trace() -> Iterator[list[tuple[str, int]]]:
    SyncTrace.calls = []
    try:
        yield SyncTrace.calls
    finally:
        SyncTrace.calls = None


def _put_files(store: Store) -> list:
    requests = [PutRequest(io.BytesIO(f"file {index}".encode() * 100), name=f"f{index}.txt") for index in range(FILES)]
    return store.put_many("photos", requests)


def test_syncfs_no_fsyncs_each_file_and_folder(store_root: Path, trace: list[tuple[str, int]]) -> None:
    _set_syncfs(store_root, "no")
    with Store.open(store_root) as store:
        assert store.tree.use_syncfs is False
        results = _put_files(store)
        fsynced = {inode for kind, inode in trace if kind == "fsync"}
        assert [call for call in trace if call[0] == "syncfs"] == []
        for result in results:
            blob = store.tree.blob_path(result.object.hash)
            alias = store.tree.alias_path("photos", result.object.id, result.object.filename)
            for path in (blob, blob.parent, alias.parent, alias.parent.parent):
                assert path.stat().st_ino in fsynced, f"{path} was not fsynced before the commit"


def test_syncfs_yes_flushes_many_files_with_one_syncfs(store_root: Path, trace: list[tuple[str, int]]) -> None:
    _set_syncfs(store_root, "yes")
    with Store.open(store_root) as store:
        assert store.tree.use_syncfs is True
        _put_files(store)
    assert ("syncfs", os.stat(store_root).st_dev) in trace


def test_a_bad_syncfs_setting_is_one_clear_error(store_root: Path) -> None:
    _set_syncfs(store_root, "sometimes")
    result = run_cli(store_root, "ls", check=None)
    assert result.returncode != 0
    assert "storage.syncfs must be one of auto, yes, no" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_auto_trusts_a_local_disk_and_not_a_fuse_filesystem(tmp_path: Path) -> None:
    """bindfs is a FUSE filesystem, as ceph-fuse is: syncfs does not reach its backing store."""
    source, view = tmp_path / "source", tmp_path / "view"
    source.mkdir()
    view.mkdir()
    assert syncfs_trusted("auto", source) is (filesystem_type(source) in ("ext4", "xfs", "btrfs", "tmpfs"))
    subprocess.run(["bindfs", str(source), str(view)], check=True, timeout=30)
    try:
        assert filesystem_type(view) == "fuse" or filesystem_type(view).startswith("fuse.")
        assert syncfs_trusted("auto", view) is False
        assert syncfs_trusted("yes", view) is True
    finally:
        subprocess.run(["fusermount3", "-u", str(view)], check=True, timeout=30)


def test_the_mount_stages_in_named_files_where_o_tmpfile_fails(store_root: Path, tmp_path: Path) -> None:
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log", env={"ASSETFS_FAIL": "tmpfile"})
    try:
        (mount.path / "photos").mkdir()
        with open(mount.path / "photos" / "open.txt", "wb") as writer:
            writer.write(b"being written")
            writer.flush()
            [journal] = (store_root / "tmp").glob("closed-*")
            files = list(journal.iterdir())  # the one being written, and empty spares (fusefs/spares.py)
            assert all(entry.name.startswith("stage-") for entry in files), files
            assert len([entry for entry in files if entry.stat().st_size > 0]) == 1, files
        for index in range(5):
            (mount.path / "photos" / f"f{index}.txt").write_bytes(b"x" * index)
        mount.settle()
        assert (mount.path / "photos" / "open.txt").read_bytes() == b"being written"
        with mount.store() as store:
            names = {name for info in store.list("photos") for name in info.names}
        assert names == {"open.txt", *(f"f{index}.txt" for index in range(5))}
    finally:
        code = stop_mount(mount)
    check_after_unmount(mount, code)
