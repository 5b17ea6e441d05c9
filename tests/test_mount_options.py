"""Mount options and open flags through a real mount: --allow-other with the kernel enforcing
modes (default_permissions), --read-only, O_DIRECT, and objects put by the CLI while mounted."""

from __future__ import annotations

import errno
import mmap
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cas.store import Store
from helpers import snapshot
import mounting
from mounting import Mount, check_after_unmount, expect_errno, put, start_mount, stop_mount

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]

OWNER, OTHER = 65534, 12345  # nobody, and a uid with no account


def as_user(uid: int, *command: str | Path) -> subprocess.CompletedProcess:
    """Run a command as `uid` (gid the same, no supplementary groups), umask 077."""
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sh", "-c", 'umask 077; "$@"', "sh",
         *map(str, command)],
        capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def shared_mount(store_root: Path, tmp_path: Path) -> Iterator[Mount]:
    """--allow-other at a mountpoint that other users can reach (tmp_path is private to root)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as other users")
    with mounting.shared_mount(store_root, tmp_path / "mount.log", "assetfs-shared-") as mount:
        yield mount


def test_allow_other_enforces_modes_and_root_chown_works(shared_mount: Mount) -> None:
    shared = shared_mount.path / "photos" / "shared"
    shared.mkdir(parents=True)
    os.chmod(shared, 0o1777)  # anyone may create; only owners may remove or rename (sticky)
    private = shared / "private.txt"
    created = as_user(OWNER, "sh", "-c", f'echo secret > "{private}"')
    assert created.returncode == 0, created.stderr
    info = private.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (OWNER, OWNER, 0o600)

    assert as_user(OTHER, "cat", private).returncode != 0
    assert as_user(OTHER, "sh", "-c", f'echo stolen > "{private}"').returncode != 0
    assert as_user(OTHER, "rm", "-f", private).returncode != 0
    assert as_user(OTHER, "sh", "-c", f'echo mine > "{shared}/mine.txt" && mv -f "{shared}/mine.txt" "{private}"'
                   ).returncode != 0
    assert as_user(OTHER, "setfattr", "-n", "user.x", "-v", "1", private).returncode != 0
    owner_reads = as_user(OWNER, "cat", private)
    assert owner_reads.returncode == 0 and owner_reads.stdout == "secret\n"
    assert private.read_text() == "secret\n"  # root reads anything

    os.chown(private, OTHER, OTHER)
    assert (private.stat().st_uid, private.stat().st_gid) == (OTHER, OTHER)
    assert as_user(OTHER, "cat", private).stdout == "secret\n"
    assert as_user(OWNER, "cat", private).returncode != 0
    assert private.read_text() == "secret\n"
    with shared_mount.store() as store:
        assert sorted(name for info in store.list("photos") for name in info.names) == [
            "shared/mine.txt", "shared/private.txt"]


def test_read_only_mount_refuses_writes_with_erofs(store_root: Path, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    object_id = put(store_root, "photos", tmp_path / "a.txt")
    (tmp_path / "b.txt").write_text("b")
    trashed = put(store_root, "photos", tmp_path / "b.txt", "--no-name")
    with Store.open(store_root) as store:
        store.delete(trashed)
        before = snapshot(store)
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log", "--read-only")
    try:
        bucket = mount.path / "photos"
        named = bucket / "a.txt"
        assert named.read_text() == "a" and (bucket / object_id / "a.txt").read_text() == "a"
        for action in (
            lambda: open(named, "w"), lambda: open(named, "a"), lambda: open(bucket / "new.txt", "w"),
            lambda: os.truncate(named, 0), lambda: os.unlink(named), lambda: os.mkdir(bucket / "folder"),
            lambda: os.rename(named, bucket / "renamed.txt"), lambda: os.link(named, bucket / "linked.txt"),
            lambda: os.chmod(named, 0o600), lambda: os.utime(named, (1, 1)),
            lambda: os.setxattr(named, "user.x", b"1"), lambda: os.mkdir(mount.path / "newbucket"),
            lambda: os.unlink(bucket / object_id / "a.txt"), lambda: os.rmdir(bucket / object_id),
            lambda: os.rename(mount.path / ".trash" / "photos" / trashed, bucket / trashed),
        ):
            expect_errno({errno.EROFS}, action)
    finally:
        code = stop_mount(mount)
    check_after_unmount(mount, code)
    with Store.open(store_root) as store:
        assert snapshot(store) == before


def aligned(size: int, fill: bytes = b"") -> mmap.mmap:
    """A page-aligned buffer, as O_DIRECT wants."""
    buffer = mmap.mmap(-1, size)
    if fill:
        buffer.write(fill)
        buffer.seek(0)
    return buffer


def test_o_direct_opens_read_and_write(mounted: Mount, tmp_path: Path) -> None:
    data = os.urandom(1024 * 1024)
    (mounted.path / "photos").mkdir()
    path = mounted.path / "photos" / "direct.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    try:
        assert os.write(fd, aligned(len(data), data)) == len(data)
    finally:
        os.close(fd)
    assert path.read_bytes() == data

    def read_direct(target: Path) -> bytes:
        buffer = aligned(len(data))
        fd = os.open(target, os.O_RDONLY | os.O_DIRECT)
        try:
            count = os.readv(fd, [buffer])
        finally:
            os.close(fd)
        return bytes(buffer[:count])

    assert read_direct(path) == data
    with mounted.store() as store:
        [info] = list(store.list("photos"))
    assert read_direct(mounted.path / "photos" / info.id / "direct.bin") == data
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    try:
        os.pwrite(fd, aligned(4096, b"z" * 4096), 8192)
    finally:
        os.close(fd)
    assert path.read_bytes() == data[:8192] + b"z" * 4096 + data[8192 + 4096:]


def test_an_object_put_by_the_cli_appears_in_a_listing(mounted: Mount, tmp_path: Path) -> None:
    (tmp_path / "first.txt").write_text("1")
    first = put(mounted.store_root, "photos", tmp_path / "first.txt", "--no-name")
    by_id = mounted.path / "photos" / ".by-id"
    assert os.listdir(by_id) == [first]  # the folder was listed (and cached) once
    (tmp_path / "second.txt").write_text("2")
    second = put(mounted.store_root, "photos", tmp_path / "second.txt")
    deadline = time.monotonic() + 5  # a bound for the wait, not a speed assertion
    while set(os.listdir(by_id)) != {first, second} or set(os.listdir(by_id.parent)) != {".by-id", "second.txt"}:
        assert time.monotonic() < deadline, (os.listdir(by_id), os.listdir(by_id.parent))
        time.sleep(0.05)
    assert (mounted.path / "photos" / second / "second.txt").read_text() == "2"
