"""A writer's own versions of a file that it replaces within the bucket's `free_superseded`
window are freed at once, not trashed (cas/superseded.py, docs/concurrency.md "Superseded
versions"); any version something else may need is let go as before.

The store-level tests commit files as the mount does (`Store.put_staged_many`, versions
`<writer>.<seq>`, `supersedes` the object the writer's previous commit created); the last
test fsyncs a file through a real mount many times.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import time

import pytest

from cas import names
from cas.blobtree import seal_staged
from cas.config import BucketConfig
from cas.fsck import check_store
from cas.model import PutResult
from cas.store import StagedWrite, Store
from helpers import blob_files, count
from mounting import Mount, start_mount, stop_mount

BUCKET = "docs"


def node_of(store: Store, path: str) -> int:
    def find(tx) -> int:
        return names.lookup(tx, names.bucket_root(tx, BUCKET), path)["id"]

    return store.catalog.run(find, write=False)


class Writer:
    """Commits versions of one node as one mount does: `<writer>.<seq>`, each from the last."""

    def __init__(self, store: Store, node: int, writer: str = "mount-a") -> None:
        self.store, self.node, self.writer = store, node, writer
        self.seq = 0
        self.made: str | None = None  # the object its last commit created

    def commit(self, data: bytes) -> PutResult:
        self.seq += 1
        path = self.store.tree.tmp / f"commit-{time.monotonic_ns()}"
        path.write_bytes(data)
        write = StagedWrite(staged=seal_staged(path), node=self.node, mtime=time.time(),
                            version=f"{self.writer}.{self.seq}", bases=None, supersedes=self.made)
        [result] = self.store.put_staged_many([write])
        self.made = None if result.deduplicated else result.object.id
        return result


@pytest.fixture
def named(store: Store) -> int:
    store.put(BUCKET, io.BytesIO(b"put by someone else"), name="file.txt")
    return node_of(store, "file.txt")


def live_or_trashed(store: Store, object_id: str) -> bool:
    return count(store, "objects", "id = :id", {"id": object_id}) == 1


def assert_clean(store: Store) -> None:
    report = check_store(store, verify_content=True, orphan_grace=0)
    assert report.problems == [], [problem.describe() for problem in report.problems]


def test_a_writers_own_versions_are_freed_when_it_replaces_them(store: Store, named: int) -> None:
    writer = Writer(store, named)
    first = writer.commit(b"version 0")
    blobs_before = len(blob_files(store.root))
    for number in range(1, 20):
        result = writer.commit(f"version {number}".encode())
    assert store.find(BUCKET, "file.txt").id == result.object.id
    assert not live_or_trashed(store, first.object.id)
    # the one put by someone else (let go, for the collector), and the newest version
    assert count(store, "objects") == 2
    assert len(blob_files(store.root)) == blobs_before
    assert not (store.tree.alias_dir(BUCKET, first.object.id)).exists()
    assert store.tree.blob_path(first.object.hash).exists() is False
    assert_clean(store)


def test_the_version_of_another_writer_is_let_go_as_before(store: Store, named: int) -> None:
    before = store.find(BUCKET, "file.txt")
    Writer(store, named).commit(b"mine")  # supersedes nothing of its own
    mine = Writer(store, named, "mount-a")
    mine.seq, mine.made = 1, None
    assert live_or_trashed(store, before.id)
    other = Writer(store, named, "mount-b")
    other.made = store.find(BUCKET, "file.txt").id  # even when told so: the node is at mount-a's version
    other.commit(b"theirs")
    assert live_or_trashed(store, other.made)


@pytest.mark.parametrize("keep", ["hold", "deduplicated", "other-mount", "too-old", "rules", "turned-off",
                                  "other-name"])
def test_a_version_something_else_may_need_is_not_freed(store: Store, named: int, keep: str) -> None:
    writer = Writer(store, named)
    first = writer.commit(b"the first version")
    if keep == "hold":
        store.hold(first.object.id, "app")
    elif keep == "deduplicated":  # its id went to another caller, who may reference it next
        assert store.put(BUCKET, io.BytesIO(b"the first version")).object.id == first.object.id
    elif keep == "other-name":
        assert store.put(BUCKET, io.BytesIO(b"the first version"), name="copy.txt").object.id == first.object.id
    elif keep == "other-mount":  # its open handles are out of sight
        store.catalog.run(lambda tx: tx.execute(
            "insert into mounts (id, host, pid, started_at, heartbeat) values ('mount-b', 'h', 1, 0, 0)"))
    elif keep == "too-old":
        store.catalog.run(lambda tx: tx.execute(
            "update objects set created_at = created_at - 120, touched_at = touched_at - 120 where id = :id",
            {"id": first.object.id}))
    elif keep == "rules":
        store.config = dataclasses.replace(store.config, buckets={BUCKET: BucketConfig(rules=("select 1 as x",))})
    elif keep == "turned-off":
        store.config = dataclasses.replace(store.config, buckets={BUCKET: BucketConfig(free_superseded=0.0)})
    writer.commit(b"the second version")
    assert live_or_trashed(store, first.object.id)
    assert store.tree.blob_path(first.object.hash).exists()
    assert_clean(store)


def test_a_version_freed_shares_its_blob_with_other_objects_safely(store: Store, named: int) -> None:
    other = store.put("elsewhere", io.BytesIO(b"shared content"), name="kept.txt")
    writer = Writer(store, named)
    first = writer.commit(b"shared content")  # the same content in another bucket: one blob
    writer.commit(b"the next version")
    assert not live_or_trashed(store, first.object.id)
    with store.open_object(other.object.id) as kept:
        assert kept.read() == b"shared content"
    assert_clean(store)


needs_fuse = pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                                reason="needs /dev/fuse and fusermount3")


@needs_fuse
@pytest.mark.timeout(300)
def test_a_file_fsynced_many_times_through_the_mount_keeps_one_copy(mounted: Mount) -> None:
    folder = mounted.path / BUCKET
    folder.mkdir()
    path = folder / "log.txt"
    with open(path, "wb") as file:
        for number in range(40):
            file.write(f"line {number}\n".encode() * 100)
            file.flush()
            os.fsync(file.fileno())
    with open(path, "ab") as file:  # a later open of the same file, still within the window
        file.write(b"the end\n")
    expected = b"".join(f"line {number}\n".encode() * 100 for number in range(40)) + b"the end\n"
    assert path.read_bytes() == expected
    with mounted.store() as store:
        assert count(store, "objects") == 1
        assert count(store, "objects", "deleted_at is not null") == 0
        assert len(blob_files(store.root)) == 1
        assert store.find(BUCKET, "log.txt").size == len(expected)


def write_version(path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())  # committed when it returns


def goes_to_the_trash(mount: Mount, object_id: str) -> bool:
    """The object is not freed, and its let-go check (within seconds: fusefs/letgo.py) trashes it."""
    deadline = time.monotonic() + 30
    with mount.store() as store:
        while live_or_trashed(store, object_id) and time.monotonic() < deadline:
            if count(store, "objects", "id = :id and deleted_at is not null", {"id": object_id}):
                return True
            time.sleep(0.1)
    return False


@needs_fuse
@pytest.mark.parametrize("how", ["xattr", "by-id"])
def test_a_version_whose_id_the_mount_showed_goes_to_the_trash(mounted: Mount, how: str) -> None:
    """An id read from user.assetfs.id or a .by-id listing may be in an application now: the
    version it names is trashed when the writer replaces it, not freed."""
    folder = mounted.path / BUCKET
    folder.mkdir()
    write_version(folder / "page.html", b"the first version")
    if how == "xattr":
        shown = os.getxattr(folder / "page.html", "user.assetfs.id").decode()
    else:
        [shown] = os.listdir(folder / ".by-id")
    write_version(folder / "page.html", b"the second version")
    write_version(folder / "page.html", b"the third version")
    assert goes_to_the_trash(mounted, shown), "a version whose id was shown was freed"
    with mounted.store() as store:
        assert [info.id for info in store.list(BUCKET, deleted=True)] == [shown], "the second, never shown, is freed"
        assert store.find(BUCKET, "page.html").size == len(b"the third version")


@needs_fuse
def test_no_version_is_freed_while_a_read_only_mount_runs(mounted: Mount, tmp_path) -> None:
    """A read-only mount has no row in `mounts`; its reader lock (cas/readers.py) still keeps
    writers from freeing what it may have open or have shown."""
    folder = mounted.path / BUCKET
    folder.mkdir()
    write_version(folder / "page.html", b"the first version")
    reader = start_mount(mounted.store_root, tmp_path / "ro", tmp_path / "ro.log", "--read-only")
    try:
        first = os.getxattr(reader.path / BUCKET / "page.html", "user.assetfs.id").decode()
        write_version(folder / "page.html", b"the second version")
    finally:
        assert stop_mount(reader) == 0, reader.log_text()
    assert goes_to_the_trash(mounted, first), "freed while a read-only mount ran"
    second = os.getxattr(folder / "page.html", "user.assetfs.id").decode()
    write_version(folder / "page.html", b"the third version")  # the reader is gone, but the id was shown
    assert goes_to_the_trash(mounted, second)


def test_an_alias_move_after_a_rename_of_a_version_freed_meanwhile_leaves_nothing(store: Store, named: int) -> None:
    writer = Writer(store, named)
    first = writer.commit(b"the first version")
    # a rename in the mount moves the object's alias after its commit (Store.follow_rename) ...
    move_alias = store.catalog.run(lambda tx: store.follow_rename(tx, named, "file.txt", "renamed.txt"))
    assert move_alias is not None
    writer.commit(b"the second version")  # ... and the write-behind frees the version before that
    assert not live_or_trashed(store, first.object.id)
    move_alias()
    assert not store.tree.alias_dir(BUCKET, first.object.id).exists()
    assert_clean(store)
