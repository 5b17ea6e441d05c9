"""The write-behind, the journal and the coherence contract of issue 11, driven through the
mount's Operations without the kernel (tests/ops_harness.py): one or two "mounts" of a real
store, the CLI's side as the `Store` API, kills that leave the journal behind.

The contract (issue 11, "The coherence contract"): a commit binds a name only if the name
still holds what the writer saw when it opened the file; otherwise the newer version stays
and the stale one is kept as a conflict copy beside it (`model_store.CONFLICT_NAME`). Readers
see a commit within the attribute timeout; removing the last name of an object puts it in the
trash within seconds.
"""

from __future__ import annotations

import errno
import io
import os
import time
from pathlib import Path

import blake3
import pyfuse3
import pytest
import trio

import fusefs.writebehind
from cas.store import Store
from fusefs.operations import SHORT
from model_store import BUCKET, Snapshot, is_conflict_name, read_snapshot
from ops_harness import CTX, SetattrFields, Starter, start_ops  # noqa: F401  (start_ops is a fixture)

pytestmark = [pytest.mark.trio, pytest.mark.timeout(120)]

TRASH_WITHIN = 5.0


@pytest.fixture(autouse=True)
def held_in_the_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closed files wait in the journal until an fsync, a settle or an unmount commits them
    (what ASSETFS_WRITEBEHIND_GATHER_S=3600 does for a real mount), so each test decides
    when the write-behind commits."""
    monkeypatch.setattr(fusefs.writebehind, "GATHER_S", 3600.0)


_contents: dict[str, bytes] = {}  # digest → content, for messages


def digest(data: bytes) -> str:
    hash_hex = blake3.blake3(data).hexdigest()
    _contents[hash_hex] = data
    return hash_hex


def shown(hash_hex: str | None, store_root: Path | None = None) -> str:
    """A content for messages: known, or read from its blob."""
    if hash_hex is None:
        return "no content"
    if hash_hex not in _contents and store_root is not None:
        with Store.open(store_root) as store:
            blob = store.tree.blob_path(hash_hex)
            return repr(blob.read_bytes()) if blob.exists() else hash_hex[:12]
    return repr(_contents.get(hash_hex, hash_hex[:12]))


def assert_holds(store_root: Path, name: str, data: bytes) -> None:
    holds = name_holds(store_root, name)
    assert holds == digest(data), f"{name} holds {shown(holds, store_root)}, expected {data!r}"


def assert_conflict_copies(store_root: Path, *contents: bytes) -> None:
    found = conflict_copies(store_root)
    objects = [(row.names, shown(row.hash, store_root), "live" if row.live else "trash")
               for row in snapshot(store_root).objects.values()]
    assert sorted(found.values()) == sorted(map(digest, contents)), (
        f"conflict copies {({name: shown(h, store_root) for name, h in found.items()})}, expected {list(contents)}; "
        f"objects: {objects}")


def snapshot(store_root: Path) -> Snapshot:
    with Store.open(store_root) as store:
        return read_snapshot(store)


def name_holds(store_root: Path, name: str) -> str | None:
    row = snapshot(store_root).names.get(name)
    return None if row is None else row.hash


def conflict_copies(store_root: Path) -> dict[str, str]:
    """conflict name → content hash, of live objects."""
    found = snapshot(store_root)
    return {name: row.hash for name, row in found.names.items() if is_conflict_name(name) and row.live}


def put_name(store_root: Path, name: str, data: bytes) -> None:
    """What `assetfs put --name` does."""
    with Store.open(store_root) as store:
        store.put(BUCKET, io.BytesIO(data), name=name, filename=name)


def journal_entries(store_root: Path) -> list[str]:
    return [entry.name for folder in (store_root / "tmp").glob("closed-*") for entry in folder.iterdir()]


# the write-behind as it is ----------------------------------------------------------------


async def test_close_journals_the_file_and_fsync_commits_it(store_root: Path, start_ops: Starter) -> None:
    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    fh, inode = await mount.create(bucket, "a.txt")
    await mount.ops.write(fh, 0, b"closed")
    await mount.close(fh)
    assert len(journal_entries(store_root)) == 1
    row = snapshot(store_root).names["a.txt"]
    assert row.object_id is None  # the name exists at once; its content is not committed yet
    assert await mount.read_file(bucket, "a.txt") == b"closed"  # the mount reads its closed copy
    assert (await mount.ops.getattr(inode, CTX)).st_size == 6
    fh = await mount.open(inode, os.O_RDONLY)
    await mount.ops.fsync(fh, False)
    await mount.close(fh)
    assert_holds(store_root, "a.txt", b"closed")
    assert journal_entries(store_root) == []


async def test_a_killed_mounts_journal_is_committed_by_the_next_mount(store_root: Path, start_ops: Starter) -> None:
    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    await mount.write_file(bucket, "a.txt", b"closed before the kill")
    await mount.kill()
    assert name_holds(store_root, "a.txt") is None and len(journal_entries(store_root)) == 1
    again = await start_ops()
    assert_holds(store_root, "a.txt", b"closed before the kill")
    assert await again.read_file(await again.bucket(BUCKET), "a.txt") == b"closed before the kill"


async def test_a_journal_entry_with_an_mtime_before_1970_is_recovered(store_root: Path, start_ops: Starter) -> None:
    """Finding 3: `cp -p` of a file from before 1970 sets its mtime before close(); killed
    then, the journal entry must still be committed by the next mount, with that mtime."""
    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    fh, inode = await mount.create(bucket, "old.txt")
    await mount.ops.write(fh, 0, b"from 1969")
    attr = pyfuse3.EntryAttributes()
    attr.st_mtime_ns = attr.st_atime_ns = -365 * 86400 * 10**9
    await mount.ops.setattr(inode, attr, SetattrFields(update_atime=True, update_mtime=True), fh, CTX)
    await mount.close(fh)
    await mount.kill()
    again = await start_ops()
    assert_holds(store_root, "old.txt", b"from 1969")
    assert (await again.ops.getattr(inode, CTX)).st_mtime_ns == -365 * 86400 * 10**9


# the coherence contract (issue 11) --------------------------------------------------------


async def test_a_put_after_close_is_not_replaced_by_the_write_behinds_commit(store_root: Path,
                                                                           start_ops: Starter) -> None:
    """close() in the mount, then `put --name` onto the same name, then the batch commits: the
    put is newer and stays; the mount's version is a conflict copy."""
    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    await mount.write_file(bucket, "x.txt", b"original", fsync=True)
    await mount.write_file(bucket, "x.txt", b"closed in the mount")
    put_name(store_root, "x.txt", b"put by the CLI afterwards")
    await mount.settle()
    assert_holds(store_root, "x.txt", b"put by the CLI afterwards")
    assert_conflict_copies(store_root, b"closed in the mount")


async def test_recovering_a_journal_does_not_replace_a_newer_put(store_root: Path, start_ops: Starter) -> None:
    """Finding 1: kill right after close(), `put --name` newer content, mount again: the
    journal's older content must not replace the newer object."""
    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    await mount.write_file(bucket, "x.txt", b"original", fsync=True)
    await mount.write_file(bucket, "x.txt", b"in the journal at the kill")
    await mount.kill()
    put_name(store_root, "x.txt", b"put while the mount was dead")
    await start_ops()  # recovers the journal
    assert_holds(store_root, "x.txt", b"put while the mount was dead")
    assert_conflict_copies(store_root, b"in the journal at the kill")


async def test_recovering_a_new_files_journal_does_not_replace_a_put_onto_its_name(store_root: Path,
                                                                                start_ops: Starter) -> None:
    """The same for a file created in the mount: the CLI put binds the created, still empty
    name; the journal's content of it is older."""
    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    await mount.write_file(bucket, "new.txt", b"created, in the journal")
    await mount.kill()
    put_name(store_root, "new.txt", b"put onto the empty name")
    await start_ops()
    assert_holds(store_root, "new.txt", b"put onto the empty name")
    assert_conflict_copies(store_root, b"created, in the journal")


async def test_a_mount_reads_a_newer_commit_after_the_attribute_timeout(store_root: Path,
                                                                        start_ops: Starter) -> None:
    """Finding 2: the 2 s linger of a mount's own content may not shadow a newer commit."""
    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    await mount.write_file(bucket, "x.txt", b"committed by the mount", fsync=True)
    put_name(store_root, "x.txt", b"newer, by the CLI")
    await trio.sleep(SHORT + 0.1)
    assert await mount.read_file(bucket, "x.txt") == b"newer, by the CLI"


async def test_an_append_through_a_stale_mount_keeps_the_newer_version(store_root: Path,
                                                                      start_ops: Starter) -> None:
    """Finding 2: an append through a mount that still has its own older content must not
    replace the newer version: either it appends to the newer one, or its result is a
    conflict copy and the newer one stays."""
    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    inode = await mount.write_file(bucket, "x.txt", b"old|", fsync=True)
    put_name(store_root, "x.txt", b"newer|")
    await trio.sleep(SHORT + 0.1)
    await mount.append(inode, b"tail")
    await mount.settle()
    holds = name_holds(store_root, "x.txt")
    assert holds in (digest(b"newer|tail"), digest(b"newer|")), (
        f"the newer version was replaced: x.txt holds {shown(holds, store_root)}")
    if holds == digest(b"newer|"):
        assert_conflict_copies(store_root, b"old|tail")


async def test_two_mounts_a_commit_does_not_replace_a_version_its_writer_did_not_see(
        store_root: Path, start_ops: Starter) -> None:
    """A closes x (not committed yet); B, which saw the original, overwrites x and fsyncs; A's
    commit then finds x changed: B's version stays on x, A's is a conflict copy."""
    first, second = await start_ops(), await start_ops()
    bucket_a = await first.bucket(BUCKET)
    await first.write_file(bucket_a, "x.txt", b"original", fsync=True)
    bucket_b = await second.bucket(BUCKET)
    await first.write_file(bucket_a, "x.txt", b"A, closed")
    await second.write_file(bucket_b, "x.txt", b"B, fsynced", fsync=True)
    await first.settle()
    assert_holds(store_root, "x.txt", b"B, fsynced")
    assert_conflict_copies(store_root, b"A, closed")


async def test_a_name_removed_by_another_mount_before_the_commit_keeps_the_closed_version(
        store_root: Path, start_ops: Starter) -> None:
    """B closes a new file (not committed yet); A, which sees it empty, removes its name; B's
    commit then finds no name: B's acknowledged content is kept (a conflict copy or the trash),
    not dropped as "removed before its commit" (that rule is for the mount that removed it)."""
    first, second = await start_ops(), await start_ops()
    bucket_b = await second.bucket(BUCKET)
    await second.write_file(bucket_b, "x.txt", b"closed in B")
    bucket_a = await first.bucket(BUCKET)
    assert await first.read_file(bucket_a, "x.txt") == b""  # A sees the name, empty until B commits
    await first.ops.unlink(bucket_a, b"x.txt", CTX)
    await second.settle()
    kept = snapshot(store_root).by_hash(digest(b"closed in B"))
    assert kept, "B's closed version is lost: no object has its content"


async def test_a_removed_last_name_puts_the_object_in_the_trash_within_seconds(store_root: Path,
                                                                              start_ops: Starter) -> None:
    """Finding 6: rm in the mount of an object's last name: in the trash within seconds,
    restorable with its name."""
    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    await mount.write_file(bucket, "x.txt", b"to be removed", fsync=True)
    await mount.ops.unlink(bucket, b"x.txt", CTX)
    deadline = time.monotonic() + TRASH_WITHIN
    while True:
        rows = snapshot(store_root).by_hash(digest(b"to be removed"))
        if rows and not rows[0].live:
            break
        assert time.monotonic() < deadline, f"not in the trash {TRASH_WITHIN:.0f} s after its last name was removed"
        await trio.sleep(0.2)
    with Store.open(store_root) as store:
        store.restore(rows[0].id)
    assert_holds(store_root, "x.txt", b"to be removed")


async def test_an_overwritten_last_name_puts_the_old_object_in_the_trash_within_seconds(
        store_root: Path, start_ops: Starter) -> None:
    """Finding 6: overwriting a file in the mount: the object it held before is in the trash
    within seconds. (Unless it was the mount's own version, replaced within the bucket's
    `free_superseded` window: then it is freed at once, tests/test_superseded.py. Turned off
    here, so that the version is let go as any other.)"""
    with open(store_root / "assetfs.toml", "a") as config:
        config.write(f'\n[buckets.{BUCKET}]\nfree_superseded = "0s"\n')
    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    await mount.write_file(bucket, "x.txt", b"first", fsync=True)
    await mount.write_file(bucket, "x.txt", b"second", fsync=True)
    deadline = time.monotonic() + TRASH_WITHIN
    while True:
        rows = snapshot(store_root).by_hash(digest(b"first"))
        assert rows, "the overwritten version is gone"
        if not rows[0].live:
            break
        assert time.monotonic() < deadline, f"not in the trash {TRASH_WITHIN:.0f} s after it was overwritten"
        await trio.sleep(0.2)


async def test_a_second_mount_keeps_a_node_the_first_holds_open_but_unlinked(store_root: Path,
                                                                           start_ops: Starter) -> None:
    """Finding 4: starting a mount must not delete a node another live mount holds open."""
    first = await start_ops()
    bucket = await first.bucket(BUCKET)
    inode = await first.write_file(bucket, "x.txt", b"open, then unlinked", fsync=True)
    await first.lookup(bucket, "x.txt")  # the kernel knows the inode
    fh = await first.open(inode, os.O_RDONLY)
    await first.ops.unlink(bucket, b"x.txt", CTX)
    await start_ops()  # a second mount of the same store starts
    assert (await first.ops.getattr(inode, CTX)).st_size == len(b"open, then unlinked")
    assert await first.ops.read(fh, 0, 100) == b"open, then unlinked"
    await first.close(fh)


@pytest.mark.parametrize("how", ["settle", "recovery"])
async def test_a_file_renamed_before_its_commit_is_named_after_its_new_name(store_root: Path, start_ops: Starter,
                                                                           how: str) -> None:
    """Finding 5: write under a temporary name, rename, commit (by the write-behind, or by the
    next mount after a kill): the object's filename follows the name it has at the commit."""
    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    await mount.write_file(bucket, ".img016.jpg.vTGY1S", b"\xff\xd8\xff\xe0 a jpeg, more or less")
    await mount.ops.rename(bucket, b".img016.jpg.vTGY1S", bucket, b"img016.jpg", 0, CTX)
    if how == "settle":
        await mount.settle()
    else:
        await mount.kill()
        await start_ops()
    found = snapshot(store_root)
    row = found.names["img016.jpg"]
    assert found.objects[row.object_id].filename == "img016.jpg"


async def test_a_version_closed_twice_with_a_put_between_keeps_both(store_root: Path, start_ops: Starter) -> None:
    """Close v1 in the mount (not committed), `put --name` v2, then open and append in the
    mount: the mount must see v2 (a commit after its close) and v1 is kept as a conflict copy,
    not dropped as "an older entry of the same node"."""
    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    inode = await mount.write_file(bucket, "x.txt", b"original", fsync=True)
    await mount.write_file(bucket, "x.txt", b"v1 closed|")
    put_name(store_root, "x.txt", b"v2 put|")
    await trio.sleep(SHORT + 0.1)
    await mount.append(inode, b"v3")
    await mount.settle()
    assert_holds(store_root, "x.txt", b"v2 put|v3")
    assert_conflict_copies(store_root, b"v1 closed|")


async def test_fsync_reports_a_failed_commit_and_keeps_the_file(store_root: Path, start_ops: Starter) -> None:
    """A commit that cannot install its blob (the blob tree made immutable): fsync answers EIO,
    the file stays readable and in the journal, and a later fsync commits it."""
    import subprocess

    mount = await start_ops()
    bucket = await mount.bucket(BUCKET)
    inode = await mount.write_file(bucket, "a.txt", b"cannot be installed yet")
    subprocess.run(["chattr", "+i", str(store_root / "blobs")], check=True)
    try:
        fh = await mount.open(inode, os.O_RDONLY)
        with pytest.raises(pyfuse3.FUSEError) as error:
            await mount.ops.fsync(fh, False)
        assert error.value.errno == errno.EIO
        assert await mount.ops.read(fh, 0, 100) == b"cannot be installed yet"
        await mount.close(fh)
        assert len(journal_entries(store_root)) == 1
    finally:
        subprocess.run(["chattr", "-i", str(store_root / "blobs")], check=True)
    await mount.settle()
    assert_holds(store_root, "a.txt", b"cannot be installed yet")
