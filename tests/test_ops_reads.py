"""Reads of the named tree answered on the mount's trio thread (`Operations.query`,
`StoreView.read_now`): on SQLite, lookup, getattr and a folder's page take no worker thread,
since each thread hop waits for a core on a busy machine (issue 9); on PostgreSQL they still
take one (a network round trip on the trio thread would stall every request). Either way
they read the catalog as it is now, so another writer's change shows at once
(docs/concurrency.md, "Many writers", 2). And a create's staging file is made ahead.
Driven through Operations without the kernel (tests/ops_harness.py), on both catalogs.
"""

from __future__ import annotations

import io
import os
import stat

import pyfuse3
import pytest
import trio

from cas.blobtree import new_staging_file
from cas.store import Store
from fusefs import listing, operations
from fusefs.inodes import NODE_BASE, NamedNode
from ops_harness import CTX, OpsMount, Starter, start_ops  # noqa: F401  (start_ops is a fixture)

pytestmark = [pytest.mark.trio, pytest.mark.timeout(120)]


class Hops:
    """Counts the calls that hand work to a worker thread while it is installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        run_sync = trio.to_thread.run_sync

        async def counted(*args, **kwargs):
            self.count += 1
            return await run_sync(*args, **kwargs)

        monkeypatch.setattr(trio.to_thread, "run_sync", counted)


async def test_lookup_getattr_and_listing_take_no_thread_on_sqlite(start_ops: Starter, store: Store,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    mount = await start_ops()
    bucket = await mount.bucket("b")
    folder = (await mount.ops.mkdir(bucket, b"d", 0o755, CTX)).st_ino
    await mount.write_file(folder, "a.txt", b"hello", fsync=True)

    hops = Hops(monkeypatch)
    entry = await mount.lookup(folder, "a.txt")
    attr = await mount.ops.getattr(entry.st_ino, CTX)
    again = await mount.lookup(bucket, "d")
    page = await listing.page(mount.ops.view, NamedNode(folder - NODE_BASE), listing.START)
    with pytest.raises(pyfuse3.FUSEError):
        await mount.lookup(folder, "missing")

    assert stat.S_ISREG(attr.st_mode) and attr.st_size == 5 and attr.st_ino == entry.st_ino
    assert again.st_ino == folder and [item.name for item, _ in page] == ["a.txt"]
    if store.catalog.dialect == "sqlite":
        assert hops.count == 0
    else:
        assert hops.count == 5  # one worker thread per read: never a round trip on the trio thread


async def test_id_folders_take_no_thread_on_sqlite(start_ops: Starter, store: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`ls -l` of a bucket's .by-id looks its id folders up again once their 1 s entries ran out."""
    mount = await start_ops()
    live = store.put("b", io.BytesIO(b"live"), name="live.txt").object
    trashed = store.put("b", io.BytesIO(b"trashed"), name="trashed.txt").object
    store.delete(trashed.id)
    bucket = await mount.bucket("b")
    by_id = (await mount.lookup(bucket, ".by-id")).st_ino
    trash = (await mount.lookup(pyfuse3.ROOT_INODE, ".trash")).st_ino
    trash_bucket = (await mount.lookup(trash, "b")).st_ino

    hops = Hops(monkeypatch)
    entry = await mount.lookup(by_id, live.id)
    attr = await mount.ops.getattr(entry.st_ino, CTX)
    direct = await mount.lookup(bucket, live.id)  # /<bucket>/<id>: the same folder, an inode of its own
    in_trash = await mount.lookup(trash_bucket, trashed.id)
    for parent, name in ((by_id, trashed.id), (trash_bucket, live.id), (by_id, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")):
        with pytest.raises(pyfuse3.FUSEError):
            await mount.lookup(parent, name)

    assert stat.S_ISDIR(attr.st_mode) and stat.S_IMODE(attr.st_mode) == 0o755 and attr.st_ino == entry.st_ino
    assert direct.st_ino != entry.st_ino and stat.S_IMODE(in_trash.st_mode) == 0o555
    assert hops.count == (0 if store.catalog.dialect == "sqlite" else 7)


async def test_another_writer_is_seen_at_once(start_ops: Starter, store: Store) -> None:
    """A name put by the CLI's API after the mount looked is found by the next lookup, and
    its new content's size by the next getattr: the reads are the catalog's, not a cache's."""
    mount = await start_ops()
    bucket = await mount.bucket("b")
    with pytest.raises(pyfuse3.FUSEError):
        await mount.lookup(bucket, "late.txt")
    store.put("b", io.BytesIO(b"first"), name="late.txt")
    inode = (await mount.lookup(bucket, "late.txt")).st_ino
    assert (await mount.ops.getattr(inode, CTX)).st_size == 5
    store.put("b", io.BytesIO(b"second, longer"), name="late.txt")
    assert (await mount.ops.getattr(inode, CTX)).st_size == len(b"second, longer")


async def test_a_big_folder_lists_every_entry_once(start_ops: Starter, store: Store) -> None:
    """Page after page, on the trio thread (SQLite, pages of NOW_PAGE) or in a worker thread
    (PostgreSQL, pages of PAGE): every entry once, in order."""
    mount = await start_ops()
    for number in range(300):
        store.put("b", io.BytesIO(b"%d" % number), name=f"many/f{number:03d}")
    folder = (await mount.lookup(await mount.bucket("b"), "many")).st_ino
    key = NamedNode(folder - NODE_BASE)
    names: list[str] = []
    cursor = listing.START
    while batch := await listing.page(mount.ops.view, key, cursor):
        names += [item.name for item, _ in batch]
        cursor = batch[-1][1]
    assert names == [f"f{number:03d}" for number in range(300)]


async def test_creates_take_staging_files_made_ahead(start_ops: Starter, monkeypatch: pytest.MonkeyPatch) -> None:
    """A create takes one of the mount's spare staging files (fusefs/spares.py) instead of
    making one while the request waits; the copies' descriptors are closed once committed."""
    mount = await start_ops()
    spares = mount.ops.contents.spares
    folder = await mount.bucket("b")
    assert spares._ready == []  # none made before a create asks
    await mount.write_file(folder, "first", b"first")
    await _until(lambda: len(spares._ready) == spares.count)
    made: list[object] = []

    def counted(folder):
        made.append(folder)
        return new_staging_file(folder)

    monkeypatch.setattr(operations, "new_staging_file", counted)
    for number in range(spares.count // 2):
        await mount.write_file(folder, f"f{number}", b"%d" % number)
    await mount.settle()
    assert made == []
    assert [await mount.read_file(folder, f"f{number}") for number in range(spares.count // 2)] == \
        [b"%d" % number for number in range(spares.count // 2)]
    journal = str(mount.ops.writebehind.journal.folder)
    await _until(lambda: _open_in(journal) == len(spares._ready))  # the spares, no committed copy


def _open_in(folder: str) -> int:
    """Descriptors of this process open on files in `folder` (unnamed ones too)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(folder + "/")
        except OSError:
            pass
    return count


async def _until(condition, limit: float = 30.0) -> None:
    with trio.fail_after(limit):
        while not condition():
            await trio.sleep(0.01)
