"""The FUSE view, through a real mount and real tools (cp, rsync, tar, diff, getfattr).

Every test runs on both catalogs. The `mounted` fixture starts `assetfs mount --foreground`,
waits for the mount, and always unmounts in teardown; after that the daemon must have exited
cleanly, logged no unexpected error, left nothing in tmp/, and `assetfs fsck` must be clean.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import tarfile
from pathlib import Path

import pytest

from conftest import run_cli
from fusefs.mount import mounted_at
from helpers import blob_files, count, snapshot
from mounting import Mount, check_after_unmount, expect_errno, put, run, start_mount, stop_mount, unmount
from cas.errors import NotFound
from cas.store import Store

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]

BIG = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nested folders, empty files and folders, a 64 MiB file, spaces and UTF-8, user xattrs."""
    root = tmp_path_factory.mktemp("source") / "tree"
    (root / "photos" / "2024" / "summer holiday").mkdir(parents=True)
    (root / "empty folder").mkdir()
    (root / "docs").mkdir()
    (root / "photos" / "2024" / "summer holiday" / "straße café.txt").write_text("grüße\n" * 100)
    (root / "photos" / "2024" / "a b c.bin").write_bytes(os.urandom(300_000))
    (root / "photos" / "empty.txt").write_bytes(b"")
    (root / "docs" / "日本語.md").write_text("# こんにちは\n")
    (root / "docs" / "readme.txt").write_text("hello\n")
    with open(root / "big.bin", "wb") as big:
        block = os.urandom(1024 * 1024)
        for index in range(BIG // len(block)):
            big.write(bytes([index]) + block[1:])
    os.setxattr(root / "docs" / "readme.txt", "user.colour", b"blue")
    os.setxattr(root / "docs" / "readme.txt", "user.binary", b"\xff\x00\x01")
    os.chmod(root / "docs" / "readme.txt", 0o600)
    return root


def own_xattrs(path: Path) -> list[str]:
    """The attributes set on a named file, without its object's (`user.assetfs.id`, …)."""
    return [name for name in os.listxattr(path) if not name.startswith("user.assetfs.")]


def assert_identical(source: Path, copy: Path) -> None:
    assert run("diff", "-r", source, copy) == ""
    assert run("rsync", "-acni", f"{source}/", f"{copy}/") == ""


# reading --------------------------------------------------------------------------------------


def test_root_lists_buckets_and_trash(mounted: Mount, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    put(mounted.store_root, "photos", tmp_path / "a.txt")
    put(mounted.store_root, "fonts", tmp_path / "a.txt")
    assert sorted(os.listdir(mounted.path)) == [".trash", "fonts", "photos"]
    assert sorted(os.listdir(mounted.path / ".trash")) == ["fonts", "photos"]


def test_object_file_reads_like_cat_with_metadata_in_xattrs(mounted: Mount, tmp_path: Path) -> None:
    source = tmp_path / "logo.bin"
    source.write_bytes(os.urandom(1_000_000))
    object_id = put(mounted.store_root, "photos", source, "--meta", "author=ada", "--meta", "tag=logo")
    path = mounted.path / "photos" / object_id / "logo.bin"
    assert path.read_bytes() == run_cli(mounted.store_root, "cat", object_id).stdout
    info = path.stat()
    assert info.st_size == 1_000_000 and oct(info.st_mode & 0o777) == oct(0o444)
    dump = run("getfattr", "-d", path)
    with mounted.store() as store:
        stored = store.get(object_id)
    for line in (f'user.assetfs.id="{object_id}"', 'user.assetfs.bucket="photos"', f'user.assetfs.hash="{stored.hash}"',
                 'user.assetfs.size="1000000"', f'user.assetfs.content_type="{stored.content_type}"',
                 'user.assetfs.meta.author="ada"', 'user.assetfs.meta.tag="logo"'):
        assert line in dump
    assert "user.assetfs.created_at=" in dump


def test_trashed_object_shows_under_trash_only(mounted: Mount, tmp_path: Path) -> None:
    (tmp_path / "gone.txt").write_text("bye")
    object_id = put(mounted.store_root, "photos", tmp_path / "gone.txt", "--no-name")
    run_cli(mounted.store_root, "rm", object_id)
    assert object_id not in os.listdir(mounted.path / "photos")
    assert (mounted.path / ".trash" / "photos" / object_id / "gone.txt").read_text() == "bye"


def test_object_put_while_mounted_shows_up(mounted: Mount, tmp_path: Path) -> None:
    assert not (mounted.path / "photos").exists()
    (tmp_path / "new.txt").write_text("new")
    object_id = put(mounted.store_root, "photos", tmp_path / "new.txt")
    assert (mounted.path / "photos" / object_id / "new.txt").read_text() == "new"
    assert (mounted.path / "photos" / "new.txt").read_text() == "new"


def test_listing_a_big_bucket_pages_through_all_entries(mounted: Mount, tmp_path: Path) -> None:
    folder = mounted.path / "photos" / "many"
    folder.mkdir(parents=True)
    names = {f"file {index:04d}.txt" for index in range(1500)}
    for name in names:
        (folder / name).write_bytes(b"")
    assert set(os.listdir(folder)) == names
    assert len(os.listdir(mounted.path / "photos")) == 2  # 'many' and the one id of the empty content


def test_statfs_reports_the_backing_filesystem(mounted: Mount) -> None:
    mounted_fs, backing = os.statvfs(mounted.path), os.statvfs(mounted.store_root)
    assert mounted_fs.f_blocks == backing.f_blocks and mounted_fs.f_bsize == backing.f_bsize


# copying in -----------------------------------------------------------------------------------


def test_cp_a_copies_a_tree_identically(mounted: Mount, source_tree: Path) -> None:
    target = mounted.path / "photos" / "tree"
    (mounted.path / "photos").mkdir()
    run("cp", "-a", source_tree, target)
    assert_identical(source_tree, target)
    copied = target / "docs" / "readme.txt"
    assert os.getxattr(copied, "user.colour") == b"blue"
    assert os.getxattr(copied, "user.binary") == b"\xff\x00\x01"
    assert oct(copied.stat().st_mode & 0o777) == oct(0o600)
    # catalog times are doubles: the mount keeps them to the microsecond, not the nanosecond
    assert abs(copied.stat().st_mtime_ns - (source_tree / "docs" / "readme.txt").stat().st_mtime_ns) < 1000


def test_cp_r_copies_files_as_deduplicated_objects(mounted: Mount, source_tree: Path) -> None:
    (mounted.path / "photos").mkdir()
    run("cp", "-r", source_tree, mounted.path / "photos" / "first")
    assert run("diff", "-r", source_tree, mounted.path / "photos" / "first") == ""
    with mounted.store() as store:
        objects = count(store, "objects")
        names = {name for info in store.list("photos") for name in info.names}
    blobs = blob_files(mounted.store_root)
    files = [path for path in source_tree.rglob("*") if path.is_file()]
    assert {f"first/{path.relative_to(source_tree)}" for path in files} == names
    assert objects == len(files) and len(blobs) == len(files)
    run("cp", "-r", source_tree, mounted.path / "photos" / "second")
    assert blob_files(mounted.store_root) == blobs  # the same content again: no new blob
    with mounted.store() as store:
        assert count(store, "objects") == objects  # and, within the bucket, no new object


def test_rsync_a_twice_transfers_nothing_the_second_time(mounted: Mount, source_tree: Path) -> None:
    target = mounted.path / "photos" / "synced"
    (mounted.path / "photos").mkdir()
    run("rsync", "-a", f"{source_tree}/", f"{target}/")
    assert_identical(source_tree, target)
    assert run("rsync", "-ai", f"{source_tree}/", f"{target}/") == ""


def test_tar_x_extracts_a_tree(mounted: Mount, source_tree: Path, tmp_path: Path) -> None:
    archive = tmp_path / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source_tree, arcname="tree")
    target = mounted.path / "photos" / "unpacked"
    target.mkdir(parents=True)
    run("tar", "-xf", archive, "-C", target)
    assert_identical(source_tree, target / "tree")


# changing files -------------------------------------------------------------------------------


def test_overwrite_append_truncate_behave_like_a_local_file(mounted: Mount, tmp_path: Path) -> None:
    local, remote = tmp_path / "local.txt", mounted.path / "photos" / "file.txt"
    (mounted.path / "photos").mkdir()
    steps = [
        lambda path: path.write_bytes(b"0123456789" * 1000),
        lambda path: path.open("ab").write(b"appended"),
        lambda path: os.truncate(path, 5000),
        lambda path: os.truncate(path, 7000),
        lambda path: _write_at(path, 100, b"patched"),
        lambda path: path.write_bytes(b"short"),
    ]
    for step in steps:
        step(local)
        step(remote)
        assert remote.read_bytes() == local.read_bytes()
        assert remote.stat().st_size == local.stat().st_size
        with mounted.store() as store:
            [info] = [info for info in store.list("photos") if "file.txt" in info.names]
        assert info.size == local.stat().st_size


def _write_at(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def test_reads_see_writes_before_close_and_the_object_changes_on_close(mounted: Mount) -> None:
    path = mounted.path / "photos" / "live.txt"
    (mounted.path / "photos").mkdir()
    path.write_text("old")
    with mounted.store() as store:
        [old] = list(store.list("photos"))
    with open(path, "r+b") as writer:
        writer.write(b"new!")
        writer.flush()
        assert path.read_bytes() == b"new!"
    with mounted.store() as store:
        [new] = [info for info in store.list("photos") if info.names == ["live.txt"]]
        assert new.id != old.id
        # the old version was this mount's own, replaced within the bucket's free_superseded
        # window, and nothing else refers to it: freed at once (cas/superseded.py)
        with pytest.raises(NotFound):
            store.get(old.id)
        with pytest.raises(NotFound):
            store.get_trashed(old.id)


def test_rename_over_a_file_hardlink_rm_rmdir(mounted: Mount) -> None:
    folder = mounted.path / "photos" / "folder"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("A")
    (folder / "b.txt").write_text("B")
    os.rename(folder / "a.txt", folder / "b.txt")
    assert sorted(os.listdir(folder)) == ["b.txt"] and (folder / "b.txt").read_text() == "A"
    os.link(folder / "b.txt", folder / "c.txt")
    b, c = (folder / "b.txt").stat(), (folder / "c.txt").stat()
    assert b.st_ino == c.st_ino and b.st_nlink == 2
    os.unlink(folder / "b.txt")
    assert (folder / "c.txt").stat().st_nlink == 1 and (folder / "c.txt").read_text() == "A"
    with pytest.raises(OSError) as error:
        os.rmdir(folder)
    assert error.value.errno == errno.ENOTEMPTY
    os.rename(folder, mounted.path / "photos" / "moved")
    assert (mounted.path / "photos" / "moved" / "c.txt").read_text() == "A"
    os.unlink(mounted.path / "photos" / "moved" / "c.txt")
    os.rmdir(mounted.path / "photos" / "moved")
    assert "moved" not in os.listdir(mounted.path / "photos")
    with mounted.store() as store:
        assert all(info.names == [] for info in store.list("photos"))
        assert count(store, "entries") == 0


def test_chmod_chown_utime_and_xattrs_on_named_files(mounted: Mount) -> None:
    path = mounted.path / "photos" / "meta.txt"
    (mounted.path / "photos").mkdir()
    path.write_text("x")
    os.chmod(path, 0o640)
    os.chown(path, 1234, 5678)
    os.utime(path, ns=(1_000_000_000, 1_500_000_000_123_000_000))
    os.setxattr(path, "user.note", "ünïcode".encode())
    info = path.stat()
    assert (info.st_mode & 0o777, info.st_uid, info.st_gid) == (0o640, 1234, 5678)
    assert info.st_mtime_ns == 1_500_000_000_123_000_000  # catalog times keep microseconds
    assert own_xattrs(path) == ["user.note"] and os.getxattr(path, "user.note") == "ünïcode".encode()
    os.removexattr(path, "user.note")
    assert own_xattrs(path) == []


def test_mkdir_at_the_root_makes_a_bucket_and_rmdir_removes_an_empty_one(mounted: Mount) -> None:
    os.mkdir(mounted.path / "newbucket")
    assert "newbucket" in os.listdir(mounted.path)
    with mounted.store() as store:
        assert "newbucket" in store.buckets()
    os.rmdir(mounted.path / "newbucket")
    assert "newbucket" not in os.listdir(mounted.path)
    with mounted.store() as store:
        assert "newbucket" not in store.buckets()


# bad input ------------------------------------------------------------------------------------


def test_bad_input_gets_the_right_errno_and_changes_nothing(mounted: Mount, tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("x")
    object_id = put(mounted.store_root, "photos", tmp_path / "x.txt")
    named = mounted.path / "photos" / "x.txt"
    object_file = mounted.path / "photos" / object_id / "x.txt"
    with mounted.store() as store:
        before = snapshot(store)
    expect_errno({errno.ENAMETOOLONG}, lambda: open(mounted.path / "photos" / ("n" * 256), "w"))
    expect_errno({errno.ENAMETOOLONG}, lambda: os.mkdir(mounted.path / "photos" / ("é" * 128)))
    expect_errno({errno.EROFS, errno.EPERM}, lambda: open(object_file, "wb"))
    expect_errno({errno.EROFS, errno.EPERM}, lambda: open(object_file, "ab"))
    expect_errno({errno.EROFS, errno.EPERM}, lambda: os.truncate(object_file, 0))
    expect_errno({errno.EROFS, errno.EPERM}, lambda: open(mounted.path / "photos" / object_id / "new.txt", "w"))
    expect_errno({errno.EROFS, errno.EPERM}, lambda: os.setxattr(object_file, "user.x", b"1"))
    expect_errno({errno.EINVAL, errno.EPERM}, lambda: open(mounted.path / "photos" / "01900000-0000-7000-8000-000000000000", "w"))
    expect_errno({errno.EINVAL, errno.EPERM}, lambda: os.mkdir(mounted.path / "photos" / "01900000-0000-7000-8000-000000000001"))
    expect_errno({errno.EINVAL, errno.EPERM}, lambda: os.rename(named, mounted.path / "photos" / "01900000-0000-7000-8000-000000000002"))
    expect_errno({errno.ENOTSUP, errno.EPERM}, lambda: os.setxattr(named, "trusted.x", b"1"))
    expect_errno({errno.ENOTSUP, errno.EPERM}, lambda: os.setxattr(named, "security.x", b"1"))
    expect_errno({errno.EINVAL}, lambda: os.mkdir(mounted.path / "Bad_Bucket"))
    expect_errno({errno.EPERM}, lambda: open(mounted.path / "file-at-root", "w"))
    with mounted.store() as store:
        assert snapshot(store) == before
    assert named.read_text() == "x" and own_xattrs(named) == []


# mounting and unmounting ----------------------------------------------------------------------


def test_background_mount_returns_ready_and_umount_stops_it(store_root: Path, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    (tmp_path / "a.txt").write_text("a")
    put(store_root, "photos", tmp_path / "a.txt")
    try:
        result = run_cli(store_root, "mount", str(mountpoint), "--log-file", str(tmp_path / "daemon.log"))
        assert "daemon pid" in result.stdout.decode()
        assert (mountpoint / "photos" / "a.txt").read_text() == "a"  # ready when the command returned
        run_cli(store_root, "umount", str(mountpoint))
        assert mounted_at(mountpoint) is None
    finally:
        unmount(mountpoint)
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()
    assert run_cli(store_root, "fsck", check=None).returncode == 0


def test_sigterm_unmounts_cleanly(store_root: Path, tmp_path: Path) -> None:
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        (mount.path / "photos").mkdir()
        (mount.path / "photos" / "kept.txt").write_text("kept")
        mount.process.send_signal(signal.SIGTERM)
        assert mount.process.wait(timeout=30) == 0
        assert mounted_at(mount.path) is None
    finally:
        code = stop_mount(mount)
    check_after_unmount(mount, code)
    with Store.open(store_root) as store:
        assert [info.names for info in store.list("photos")] == [["kept.txt"]]


def test_stale_mount_gets_a_clear_error_and_umount_clears_it(store_root: Path, tmp_path: Path) -> None:
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        mount.process.send_signal(signal.SIGKILL)
        mount.process.wait(timeout=30)
        expect_errno({errno.ENOTCONN}, lambda: os.listdir(mount.path))
        again = run_cli(store_root, "mount", str(mount.path), check=2)
        message = again.stderr.decode()
        assert "stale" in message and "assetfs umount" in message and "fusermount3 -u" in message
        assert len(message.strip().splitlines()) == 1
        run_cli(store_root, "umount", str(mount.path))
        assert mounted_at(mount.path) is None
    finally:
        unmount(mount.path)
    second = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount2.log")
    try:
        assert ".trash" in os.listdir(second.path)
    finally:
        code = stop_mount(second)
    check_after_unmount(second, code)


def test_an_unexpected_error_in_a_handler_is_eio_and_the_mount_keeps_serving(store_root: Path, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    put(store_root, "photos", tmp_path / "a.txt")
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log",
                        env={"ASSETFS_MOUNT_FAULT": "listxattr:1"})
    try:
        expect_errno({errno.EIO}, lambda: os.listxattr(mount.path / "photos" / "a.txt"))
        assert own_xattrs(mount.path / "photos" / "a.txt") == []
        assert (mount.path / "photos" / "a.txt").read_text() == "a"
    finally:
        code = stop_mount(mount)
    assert code == 0
    assert "injected fault in listxattr" in mount.log_text()
