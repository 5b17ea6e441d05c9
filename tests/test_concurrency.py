"""Concurrent puts: threads sharing one Store, and separate processes that each open the store.

The blob lock (SQLite's write lock, PostgreSQL's advisory lock) must make concurrent puts of
the same content end as one object and one blob, and puts of different content must all
succeed, whatever the interleaving.
"""

import io
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3
import pytest

from cas.store import Store
from helpers import blob_files, count, rows, tmp_entries

THREADS = 12
PROCESSES = 6

# Opens the store, waits for the start signal (so that the puts overlap), puts, prints JSON.
PUT_SNIPPET = r"""
import json, os, sys, time
from cas.store import Store
root, bucket, source, name, go = sys.argv[1:6]
with Store.open(root) as store:
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    result = store.put(bucket, source, name=name or None)
    print(json.dumps({"id": result.object.id, "deduplicated": result.deduplicated, "hash": result.object.hash}))
"""


def blob_path(root: Path, hash_hex: str) -> Path:
    return root / "blobs" / hash_hex[0:2] / hash_hex[2:4] / hash_hex


def read(store: Store, object_id: str) -> bytes:
    with store.open_object(object_id) as file:
        return file.read()


def put_in_threads(store: Store, jobs: list[dict]) -> list:
    """Run store.put for each job at once (a barrier releases them together)."""
    barrier = threading.Barrier(len(jobs))

    def run(job: dict):
        barrier.wait()
        return store.put(job["bucket"], io.BytesIO(job["data"]), name=job.get("name"))

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(run, jobs))


def put_in_processes(store_root: Path, tmp_path: Path, jobs: list[dict]) -> list[dict]:
    """Run each job in its own python process; all start putting when a signal file appears."""
    go = tmp_path / "go"
    processes = []
    try:
        for index, job in enumerate(jobs):
            source = tmp_path / f"source-{index}.bin"
            source.write_bytes(job["data"])
            processes.append(subprocess.Popen(
                [sys.executable, "-c", PUT_SNIPPET, str(store_root), job["bucket"], str(source),
                 job.get("name") or "", str(go)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))
        for process in processes:  # every process has opened the store
            assert process.stdout.readline().strip() == "ready", process.stderr.read()
        go.touch()
        results = []
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, f"put in a subprocess failed:\n{err}"
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def assert_single_object(store: Store, bucket: str, data: bytes, ids: list[str]) -> None:
    hash_hex = blake3.blake3(data).hexdigest()
    assert len(set(ids)) == 1, f"expected one object, got {sorted(set(ids))}"
    assert count(store, "objects", "bucket = :bucket", {"bucket": bucket}) == 1
    assert count(store, "blobs") == 1
    assert rows(store, "select hash, size from blobs") == [{"hash": hash_hex, "size": len(data)}]
    assert blob_files(store.root) == [blob_path(store.root, hash_hex)]
    assert blob_path(store.root, hash_hex).stat().st_nlink == 2
    assert read(store, ids[0]) == data
    assert tmp_entries(store) == []


def test_same_content_from_threads(store: Store) -> None:
    data = os.urandom(256 * 1024)

    results = put_in_threads(store, [{"bucket": "shared", "data": data}] * THREADS)

    assert sum(not result.deduplicated for result in results) == 1
    assert_single_object(store, "shared", data, [result.object.id for result in results])


def test_same_content_from_processes(store_root: Path, tmp_path: Path) -> None:
    data = os.urandom(256 * 1024)

    results = put_in_processes(store_root, tmp_path, [{"bucket": "shared", "data": data}] * PROCESSES)

    assert sum(not result["deduplicated"] for result in results) == 1
    with Store.open(store_root) as store:
        assert_single_object(store, "shared", data, [result["id"] for result in results])


def test_same_content_into_many_buckets_from_threads(store: Store) -> None:
    data = os.urandom(64 * 1024)
    buckets = [f"bucket-{index}" for index in range(THREADS)]

    results = put_in_threads(store, [{"bucket": bucket, "data": data} for bucket in buckets])

    assert len({result.object.id for result in results}) == THREADS
    hash_hex = blake3.blake3(data).hexdigest()
    assert blob_files(store.root) == [blob_path(store.root, hash_hex)]
    assert count(store, "blobs") == 1
    assert blob_path(store.root, hash_hex).stat().st_nlink == 1 + THREADS
    assert store.buckets() == sorted(buckets)
    assert tmp_entries(store) == []


def test_different_contents_from_threads(store: Store) -> None:
    contents = [os.urandom(32 * 1024) + bytes([index]) for index in range(THREADS)]

    results = put_in_threads(store, [{"bucket": "fresh", "data": data} for data in contents])

    assert all(not result.deduplicated for result in results)
    assert len({result.object.id for result in results}) == THREADS
    for result, data in zip(results, contents):
        assert result.object.hash == blake3.blake3(data).hexdigest()
        assert read(store, result.object.id) == data
    assert count(store, "objects") == THREADS
    assert count(store, "blobs") == THREADS
    assert len(blob_files(store.root)) == THREADS
    assert count(store, "buckets") == 1
    assert tmp_entries(store) == []


def test_different_contents_from_processes(store_root: Path, tmp_path: Path) -> None:
    contents = [os.urandom(32 * 1024) + bytes([index]) for index in range(PROCESSES)]

    results = put_in_processes(store_root, tmp_path, [{"bucket": "fresh", "data": data} for data in contents])

    with Store.open(store_root) as store:
        assert len({result["id"] for result in results}) == PROCESSES
        for result, data in zip(results, contents):
            assert read(store, result["id"]) == data
        assert count(store, "objects") == PROCESSES
        assert len(blob_files(store_root)) == PROCESSES
        assert count(store, "buckets") == 1
        assert tmp_entries(store) == []


def assert_name_refers_to_one(store: Store, name: str, ids_and_contents: list[tuple[str, bytes]]) -> None:
    holders = []
    for object_id, data in ids_and_contents:
        info = store.get(object_id)
        assert read(store, object_id) == data
        assert info.hash == blake3.blake3(data).hexdigest() and info.size == len(data)
        alias = store.root / "objects" / info.bucket / object_id[-4:-2] / object_id[-2:] / object_id / info.filename
        assert alias.read_bytes() == data
        if name in info.names:
            holders.append(object_id)
    assert len(holders) == 1, f"{name} should refer to exactly one object, refers to {holders}"
    assert count(store, "entries", "name = :name", {"name": name.rsplit("/", 1)[-1]}) == 1
    assert tmp_entries(store) == []


@pytest.mark.parametrize("existing", ["new bucket", "existing folder"])
def test_same_name_from_processes(store_root: Path, tmp_path: Path, existing: str) -> None:
    """Every process binds the same new name; with the folder already there nothing serializes
    the binds but the catalog's handling of the name's row."""
    contents = [f"version {index}\n".encode() * 1000 for index in range(PROCESSES)]
    if existing == "existing folder":
        with Store.open(store_root) as store:
            store.put("site", io.BytesIO(b"neighbour"), name="pages/other.html")

    results = put_in_processes(
        store_root, tmp_path, [{"bucket": "site", "data": data, "name": "pages/index.html"} for data in contents]
    )

    with Store.open(store_root) as store:
        assert_name_refers_to_one(store, "pages/index.html", [(r["id"], data) for r, data in zip(results, contents)])
        assert count(store, "objects") == PROCESSES + (existing == "existing folder")


@pytest.mark.parametrize("existing", ["new bucket", "existing folder"])
def test_same_name_from_threads(store: Store, existing: str) -> None:
    contents = [f"version {index}\n".encode() * 1000 for index in range(THREADS)]
    if existing == "existing folder":
        store.put("site", io.BytesIO(b"neighbour"), name="pages/other.html")

    results = put_in_threads(store, [{"bucket": "site", "data": data, "name": "pages/index.html"} for data in contents])

    assert_name_refers_to_one(store, "pages/index.html", [(r.object.id, data) for r, data in zip(results, contents)])
    # the replaced objects were touched, none lost its content
    assert count(store, "objects", "touched_at is null") == 0


def test_objects_replaced_concurrently_are_touched(store: Store) -> None:
    """Existing, untouched objects are bound to one name at once (dedup hits with a name).

    Every object that loses the name must end up touched, or GC would never re-check it; the
    one that keeps the name is referenced. A bind that read which object it replaced before a
    concurrent bind committed would touch the wrong one.
    """
    contents = [f"existing {index}\n".encode() * 100 for index in range(THREADS)]
    existing = [store.put("site", io.BytesIO(data)).object for data in contents]
    first_holder = store.put("site", io.BytesIO(b"the first holder of the name"), name="pages/index.html").object
    store.catalog.run(lambda tx: tx.execute("update objects set touched_at = null"))

    results = put_in_threads(store, [{"bucket": "site", "data": data, "name": "pages/index.html"} for data in contents])

    assert all(result.deduplicated for result in results)
    assert [result.object.id for result in results] == [info.id for info in existing]
    infos = [store.get(info.id) for info in existing + [first_holder]]
    holders = [info for info in infos if info.names == ["pages/index.html"]]
    assert len(holders) == 1
    untouched_losers = [info.id for info in infos if not info.names and info.touched_at is None]
    assert untouched_losers == [], "objects that lost the name were not touched"
