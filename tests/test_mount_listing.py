"""Listing big folders through a real mount: readdir resumes at stable offsets while entries
come and go, and 100,000 entries list completely without the daemon's memory ballooning."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from cas import names
from cas.catalog import Transaction
from cas.store import Store
from mounting import Mount

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
