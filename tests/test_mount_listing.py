"""Listing big folders through a real mount: readdir resumes at stable offsets while entries
come and go, and 100,000 entries (names, or a bucket's objects in .by-id) list completely
without the daemon's memory ballooning."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import blake3
import pytest

from cas import names
from cas.ids import new_object_id
from cas.catalog import Transaction
from cas.store import Store
from mounting import Mount, start_mount, stop_mount

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]

RSS_GROWTH_LIMIT = 200 * 1024 * 1024


def fill_folder(store_root: Path, bucket: str, folder: str, count: int, prefix: str) -> None:
    """`count` empty files named `<prefix><node id>` in `<bucket>/<folder>`, made in the catalog
    in one statement per table (making them through the mount would take minutes)."""

    def fill(tx: Transaction) -> None:
        parent = names.lookup(tx, names.bucket_root(tx, bucket), folder)["id"]
        first = tx.value("select coalesce(max(id), 0) as top from nodes")
        tx.execute(
            "with recursive seq (n) as (select 1 union all select n + 1 from seq where n < :count) "
            "insert into nodes (bucket, kind, object_id, mode, uid, gid, mtime, ctime, xattrs) "
            "select :bucket, 'file', null, 420, 0, 0, n, n, '{}' from seq",
            {"count": count, "bucket": bucket},
        )
        tx.execute(
            "insert into entries (parent_id, name, node_id) "
            "select :parent, :prefix || cast(id as text), id from nodes where id > :first and bucket = :bucket",
            {"parent": parent, "prefix": prefix, "first": first, "bucket": bucket},
        )

    with Store.open(store_root) as store:
        store.catalog.run(fill)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def scan(folder: Path, pause_every: int = 0) -> list[str]:
    """os.scandir of the folder; with `pause_every`, a short sleep every so many entries, so
    that other work lands between the reads of one listing."""
    found = []
    with os.scandir(folder) as entries:
        for index, entry in enumerate(entries):
            found.append(entry.name)
            if pause_every and index % pause_every == 0:
                time.sleep(0.002)
    return found


def test_readdir_resumes_exactly_while_entries_are_created_and_removed(mounted: Mount) -> None:
    folder = mounted.path / "photos" / "busy"
    folder.mkdir(parents=True)
    fill_folder(mounted.store_root, "photos", "busy", 3000, "keep-")
    kept = set(os.listdir(folder))
    assert len(kept) == 3000
    stop = threading.Event()
    churned = 0

    def churn() -> None:  # names that sort among the kept ones, created and removed all along
        nonlocal churned
        while not stop.is_set():
            for name in sorted(kept)[churned % 50::50]:
                path = folder / f"{name}-churn"
                path.write_bytes(b"x")
                path.unlink()
            churned += 1
            (folder / f"keep-0-{churned}").write_bytes(b"")  # sorts before every kept name
            (folder / f"keep-0-{churned}").unlink()

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        listings = [scan(folder, pause_every=20) for _ in range(3)]
    finally:
        stop.set()
        worker.join()
    assert churned > 0, "the listing did not overlap any creates and unlinks"
    for listed in listings:
        assert len(listed) == len(set(listed)), "an entry was listed twice"
        assert kept <= set(listed), f"missing: {sorted(kept - set(listed))[:5]}"


def test_a_folder_of_100000_entries_lists_completely_in_bounded_memory(mounted: Mount) -> None:
    folder = mounted.path / "photos" / "huge"
    folder.mkdir(parents=True)
    (mounted.path / "photos" / "small").mkdir()
    assert scan(mounted.path / "photos" / "small") == []  # the daemon has listed something once
    fill_folder(mounted.store_root, "photos", "huge", 100_000, "f")
    pid = mounted.process.pid
    before = rss_bytes(pid)
    listed = scan(folder)
    after = rss_bytes(pid)
    assert len(listed) == 100_000 and len(set(listed)) == 100_000
    assert all(name.startswith("f") for name in listed)
    assert after - before < RSS_GROWTH_LIMIT, f"RSS grew by {(after - before) >> 20} MiB"


def make_objects(store_root: Path, bucket: str, count: int) -> None:
    """`count` objects without names, each with its own tiny blob and its alias, written in
    bulk (blob files and aliases, then the rows in one transaction) as a put would leave them:
    `Store.put` of 100,000 objects would take ten minutes."""
    with Store.open(store_root) as store:
        rows, now = [], time.time()
        for number in range(count):
            content = b"object %d\n" % number
            hash_hex = blake3.blake3(content).hexdigest()
            blob, object_id = store.tree.blob_path(hash_hex), new_object_id()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(content)
            blob.chmod(0o444)
            alias = store.tree.alias_path(bucket, object_id, f"f{number}.txt")
            alias.parent.mkdir(parents=True)
            os.link(blob, alias)
            rows.append({"id": object_id, "bucket": bucket, "hash": hash_hex, "size": len(content),
                         "filename": alias.name, "now": now})
        os.sync()

        def insert(tx: Transaction) -> None:
            names.ensure_bucket(tx, bucket, now, names.Owner.current())
            for row in rows:
                tx.execute("insert into blobs (hash, size, created_at) values (:hash, :size, :now)", row)
                tx.execute("insert into objects (id, bucket, hash, size, content_type, filename, metadata, created_at) "
                           "values (:id, :bucket, :hash, :size, 'text/plain', :filename, '{}', :now)", row)

        store.catalog.run(insert, write=True)


@pytest.mark.long
def test_a_bucket_of_100000_objects_lists_its_folders_and_all_ids_in_bounded_memory(store_root: Path,
                                                                                  tmp_path: Path) -> None:
    make_objects(store_root, "photos", 100_000)
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log")
    try:  # not the `mounted` fixture: its fsck of 100,000 objects afterwards takes minutes
        (mount.path / "photos" / "2024").mkdir()
        (mount.path / "photos" / "drafts").mkdir()
        assert sorted(os.listdir(mount.path / "photos")) == [".by-id", "2024", "drafts"]
        before = rss_bytes(mount.process.pid)
        listed = scan(mount.path / "photos" / ".by-id")
        after = rss_bytes(mount.process.pid)
    finally:
        code = stop_mount(mount)
    assert len(listed) == 100_000 and len(set(listed)) == 100_000
    assert after - before < RSS_GROWTH_LIMIT, f"RSS grew by {(after - before) >> 20} MiB"
    assert code == 0 and "Traceback" not in mount.log_text()
