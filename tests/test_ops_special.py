"""Symlinks, mknod, FIFOs and devices, atime, ctime and link counts, driven through the
mount's Operations without the kernel (tests/ops_harness.py), on both catalogs; and the
coherence contract for such nodes between two mounts of one store (docs/concurrency.md):
they are nodes like any file, renamed and removed by whichever mount.
"""

from __future__ import annotations

import errno
import io
import os
import stat

import pyfuse3
import pytest

from cas import names
from cas.store import Store
from ops_harness import CTX, OpsMount, SetattrFields, Starter, start_ops  # noqa: F401  (start_ops is a fixture)

pytestmark = [pytest.mark.trio, pytest.mark.timeout(120)]


async def expect(code: int, call) -> None:
    with pytest.raises(pyfuse3.FUSEError) as error:
        await call
    assert error.value.errno == code, f"{errno.errorcode[error.value.errno]}, expected {errno.errorcode[code]}"


async def folder(mount: OpsMount, bucket: str, name: str) -> int:
    root = await mount.bucket(bucket)
    return (await mount.ops.mkdir(root, name.encode(), 0o755, CTX)).st_ino


async def test_symlink_readlink_and_its_attributes(start_ops: Starter) -> None:
    mount = await start_ops()
    parent = await folder(mount, "b", "d")
    entry = await mount.ops.symlink(parent, b"link", "zielé/file".encode(), CTX)
    assert stat.S_ISLNK(entry.st_mode) and stat.S_IMODE(entry.st_mode) == 0o777
    assert entry.st_size == len("zielé/file".encode()) and entry.st_nlink == 1
    assert await mount.ops.readlink(entry.st_ino, CTX) == "zielé/file".encode()
    assert (await mount.lookup(parent, "link")).st_ino == entry.st_ino

    attr = pyfuse3.EntryAttributes()
    attr.st_uid, attr.st_gid = 1234, 5678
    attr.st_atime_ns, attr.st_mtime_ns = 7_000_000_000, 8_000_000_000
    changed = await mount.ops.setattr(entry.st_ino, attr, SetattrFields(update_uid=True, update_gid=True,
                                                                        update_atime=True, update_mtime=True),
                                      None, CTX)
    assert (changed.st_uid, changed.st_gid, changed.st_atime_ns, changed.st_mtime_ns) == \
        (1234, 5678, 7_000_000_000, 8_000_000_000)

    linked = await mount.ops.link(entry.st_ino, parent, b"again", CTX)
    assert linked.st_nlink == 2
    await mount.ops.rename(parent, b"link", parent, b"moved", 0, CTX)
    assert await mount.ops.readlink((await mount.lookup(parent, "moved")).st_ino, CTX) == "zielé/file".encode()
    await mount.ops.unlink(parent, b"again", CTX)
    assert (await mount.ops.getattr(entry.st_ino, CTX)).st_nlink == 1

    file_inode = await mount.write_file(parent, "file", b"data")
    await expect(errno.EINVAL, mount.ops.readlink(file_inode, CTX))
    await expect(errno.EEXIST, mount.ops.symlink(parent, b"moved", b"x", CTX))
    await expect(errno.EILSEQ, mount.ops.symlink(parent, b"bad", b"\xff", CTX))
    await expect(errno.ENAMETOOLONG, mount.ops.symlink(parent, b"long", b"x" * 4096, CTX))
    await expect(errno.EINVAL, mount.ops.open(entry.st_ino, os.O_RDONLY, CTX))  # the kernel opens no symlink
    truncate = pyfuse3.EntryAttributes()
    await expect(errno.EINVAL, mount.ops.setattr(entry.st_ino, truncate, SetattrFields(update_size=True), None, CTX))
    await expect(errno.EPERM, mount.ops.symlink(pyfuse3.ROOT_INODE, b"top", b"x", CTX))  # the root holds buckets


async def test_mknod_of_a_regular_file_is_a_create_and_close(store_root, start_ops: Starter) -> None:
    mount = await start_ops()
    parent = await folder(mount, "b", "d")
    entry = await mount.ops.mknod(parent, b"made", stat.S_IFREG | 0o640, 0, CTX)
    assert stat.S_ISREG(entry.st_mode) and stat.S_IMODE(entry.st_mode) == 0o640 and entry.st_size == 0
    assert not mount.ops.handles  # nothing is left open
    await mount.settle()
    with Store.open(store_root) as store:
        row = store.catalog.run(lambda tx: names.node_attrs(tx, entry.st_ino - (1 << 48)), write=False)
        assert row["object_id"] is not None and store.get(row["object_id"]).size == 0  # an empty object, as create
    fh = await mount.open(entry.st_ino, os.O_WRONLY)
    await mount.ops.write(fh, 0, b"then written")
    await mount.close(fh)
    assert await mount.read_file(parent, "made") == b"then written"


@pytest.mark.parametrize("file_type, rdev", [(stat.S_IFIFO, 0), (stat.S_IFSOCK, 0),
                                             (stat.S_IFCHR, os.makedev(1, 3)), (stat.S_IFBLK, os.makedev(7, 2))])
async def test_fifos_sockets_and_devices_are_nodes_without_content(store_root, start_ops: Starter, file_type: int,
                                                                   rdev: int) -> None:
    mount = await start_ops()
    parent = await folder(mount, "b", "d")
    entry = await mount.ops.mknod(parent, b"node", file_type | 0o600, rdev, CTX)
    assert stat.S_IFMT(entry.st_mode) == file_type and entry.st_rdev == rdev and entry.st_size == 0
    again = await mount.lookup(parent, "node")
    assert (again.st_mode, again.st_rdev) == (entry.st_mode, rdev)
    await expect(errno.EINVAL, mount.ops.readlink(entry.st_ino, CTX))
    await mount.ops.unlink(parent, b"node", CTX)
    await expect(errno.ENOENT, mount.lookup(parent, "node"))
    await expect(errno.EINVAL, mount.ops.mknod(parent, b"odd", 0o170000 | 0o600, 0, CTX))  # no such file type
    with Store.open(store_root) as store:
        assert store.catalog.run(lambda tx: tx.value("select count(*) as n from objects"), write=False) == 0


async def test_atime_ctime_and_link_counts(start_ops: Starter) -> None:
    mount = await start_ops()
    parent = await folder(mount, "b", "d")
    inode = await mount.write_file(parent, "file", b"content")
    await mount.settle()
    before = await mount.ops.getattr(inode, CTX)
    assert before.st_atime_ns <= before.st_mtime_ns  # made, then written (a write changes no atime)

    attr = pyfuse3.EntryAttributes()
    attr.st_atime_ns = 1_000_000_000
    changed = await mount.ops.setattr(inode, attr, SetattrFields(update_atime=True), None, CTX)
    assert (changed.st_atime_ns, changed.st_mtime_ns) == (1_000_000_000, before.st_mtime_ns)
    assert changed.st_ctime_ns >= before.st_ctime_ns

    fh = await mount.open(inode, os.O_WRONLY | os.O_TRUNC)  # O_TRUNC: ctime and mtime now
    truncated = await mount.ops.getattr(inode, CTX)
    await mount.close(fh)
    assert truncated.st_size == 0 and truncated.st_ctime_ns > changed.st_ctime_ns
    await mount.settle()
    assert (await mount.ops.getattr(inode, CTX)).st_ctime_ns == truncated.st_ctime_ns  # the commit keeps it

    fh, new = await mount.create(parent, "new")  # closed with nothing written: its commit moves no time
    await mount.close(fh)
    created = await mount.ops.getattr(new, CTX)
    await mount.settle()
    committed = await mount.ops.getattr(new, CTX)
    assert (committed.st_ctime_ns, committed.st_mtime_ns) == (created.st_ctime_ns, created.st_mtime_ns)

    await mount.ops.mkdir(parent, b"sub1", 0o755, CTX)
    await mount.ops.mkdir(parent, b"sub2", 0o755, CTX)
    await mount.ops.symlink(parent, b"link", b"sub1", CTX)
    assert (await mount.ops.getattr(parent, CTX)).st_nlink == 4
    assert (await mount.ops.getattr(await mount.bucket("b"), CTX)).st_nlink == 3

    fh = await mount.open(new, os.O_RDWR)  # open while its last name goes: no links left
    await mount.ops.unlink(parent, b"new", CTX)
    assert (await mount.ops.getattr(new, CTX)).st_nlink == 0
    await mount.close(fh)


async def test_another_mount_renames_and_removes_symlinks_and_fifos(start_ops: Starter) -> None:
    a, b = await start_ops(), await start_ops()
    parent_a = await folder(a, "b", "d")
    link = await a.ops.symlink(parent_a, b"link", b"target", CTX)
    await a.ops.mknod(parent_a, b"fifo", stat.S_IFIFO | 0o644, 0, CTX)

    parent_b = (await b.lookup(await b.bucket("b"), "d")).st_ino
    assert parent_b == parent_a  # named-tree inodes are the same in every mount
    seen = await b.lookup(parent_b, "link")
    assert seen.st_ino == link.st_ino and await b.ops.readlink(seen.st_ino, CTX) == b"target"
    await b.ops.rename(parent_b, b"link", parent_b, b"renamed", 0, CTX)
    await b.ops.unlink(parent_b, b"fifo", CTX)

    await expect(errno.ENOENT, a.lookup(parent_a, "link"))
    await expect(errno.ENOENT, a.lookup(parent_a, "fifo"))
    assert await a.ops.readlink((await a.lookup(parent_a, "renamed")).st_ino, CTX) == b"target"
    await a.ops.unlink(parent_a, b"renamed", CTX)
    await expect(errno.ENOENT, b.lookup(parent_b, "renamed"))


def assert_subdirs_counted(store_root) -> None:
    """Every folder's `nodes.subdirs` is what counting its entries gives."""
    with Store.open(store_root) as store:
        wrong = store.catalog.run(lambda tx: tx.all(
            "select id, subdirs, (select count(*) from entries e join nodes k on k.id = e.node_id "
            "where e.parent_id = n.id and k.kind = 'dir') as counted from nodes n where kind = 'dir'"), write=False)
    assert [row for row in wrong if row["subdirs"] != row["counted"]] == []


async def test_a_folders_link_count_follows_mkdir_rmdir_rename_and_put(store_root, start_ops: Starter) -> None:
    mount = await start_ops()
    top = await mount.bucket("b")
    parent = await folder(mount, "b", "d")
    for name in (b"a", b"b", b"c"):
        await mount.ops.mkdir(parent, name, 0o755, CTX)
    await mount.ops.mkdir(top, b"x", 0o755, CTX)
    assert (await mount.ops.getattr(parent, CTX)).st_nlink == 5
    await mount.ops.rename(parent, b"a", top, b"x", 0, CTX)  # onto an empty folder elsewhere
    await mount.ops.rename(parent, b"b", parent, b"c", 0, CTX)  # onto an empty folder beside it
    await mount.ops.rename(parent, b"c", parent, b"renamed", 0, CTX)
    assert (await mount.ops.getattr(parent, CTX)).st_nlink == 3
    assert (await mount.ops.getattr(top, CTX)).st_nlink == 4  # d and x
    with Store.open(store_root) as store:  # a put makes the folders of its name
        store.put("b", io.BytesIO(b"data"), name="d/new/deeper/file.txt", filename="file.txt")
    assert (await mount.ops.getattr(parent, CTX)).st_nlink == 4
    await mount.ops.rmdir(parent, b"renamed", CTX)
    assert (await mount.ops.getattr(parent, CTX)).st_nlink == 3
    assert_subdirs_counted(store_root)
