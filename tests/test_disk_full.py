"""A full disk fails a put cleanly: a StoreError that says so, and nothing half-stored.

The store lives on a small tmpfs mounted for the test (root only); the fixture always
unmounts it, also when the test fails.
"""

import io
import os
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from cas.errors import StoreError
from cas.store import Store
from helpers import blob_files, count, rows, small_tmpfs, snapshot, tmp_entries

DISK_SIZE = "2m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small-disk", DISK_SIZE) as path:
        yield path


@pytest.fixture
def full_store(small_disk: Path, database_url: str | None) -> Iterator[Store]:
    store, _ = Store.init(small_disk / "store", database_url=database_url)
    try:
        yield store
    finally:
        store.close()


def free_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def read(store: Store, object_id: str) -> bytes:
    with store.open_object(object_id) as file:
        return file.read()


def assert_objects_intact(store: Store, expected: dict[str, bytes]) -> None:
    """Every object row has its blob with the recorded size and hash (invariant 1)."""
    for object_id, data in expected.items():
        info = store.get(object_id)
        assert read(store, object_id) == data
        blob = store.root / "blobs" / info.hash[0:2] / info.hash[2:4] / info.hash
        assert blob.stat().st_size == info.size == len(data)
        assert blake3.blake3(blob.read_bytes()).hexdigest() == info.hash


def test_put_larger_than_the_free_space(full_store: Store, small_disk: Path, tmp_path: Path) -> None:
    store = full_store
    earlier = {
        store.put("assets", io.BytesIO(b"earlier object " * 100), name="kept/one.txt").object.id: b"earlier object " * 100,
        store.put("other", io.BytesIO(b"second earlier object")).object.id: b"second earlier object",
    }
    big = tmp_path / "big.bin"  # outside the small disk
    big.write_bytes(os.urandom(free_bytes(small_disk) + 512 * 1024))
    before = snapshot(store)
    blobs_before = blob_files(store.root)

    with pytest.raises(StoreError) as failure:
        store.put("assets", big, name="kept/big.bin")

    assert "disk is full" in str(failure.value)
    assert tmp_entries(store) == []
    assert blob_files(store.root) == blobs_before
    assert count(store, "objects") == 2
    assert count(store, "objects", "hash = :hash", {"hash": blake3.blake3(big.read_bytes()).hexdigest()}) == 0
    assert snapshot(store) == before
    assert_objects_intact(store, earlier)
    assert store.get(next(iter(earlier))).names == ["kept/one.txt"]
    # the staged part was removed: the space is free again and the store keeps working
    small = store.put("assets", io.BytesIO(b"after the failure"), name="kept/after.txt").object
    assert read(store, small.id) == b"after the failure"
    assert tmp_entries(store) == []


def test_stream_larger_than_the_free_space(full_store: Store, small_disk: Path) -> None:
    store = full_store
    earlier = store.put("assets", io.BytesIO(b"before")).object
    before = snapshot(store)

    with pytest.raises(StoreError) as failure:
        store.put("assets", io.BytesIO(b"\xab" * (free_bytes(small_disk) + 1024 * 1024)))

    assert "disk is full" in str(failure.value)
    assert tmp_entries(store) == []
    assert snapshot(store) == before
    assert_objects_intact(store, {earlier.id: b"before"})


def test_catalog_cannot_grow_on_a_full_disk(small_disk: Path) -> None:
    """SQLite catalog on the full disk: the content fits in staging, the catalog's write does not."""
    filler = small_disk / "filler"
    with Store.init(small_disk / "store")[0] as store:
        earlier = {store.put("assets", io.BytesIO(b"earlier")).object.id: b"earlier"}
        with open(filler, "wb") as file:
            file.write(b"\0" * (free_bytes(small_disk) - 256 * 1024))
        big_metadata = {"payload": "m" * 60_000}  # each put grows the catalog by about this much

        failure = None
        for index in range(100):
            data = f"small content {index}".encode()
            objects_before = count(store, "objects")
            try:
                info = store.put("assets", io.BytesIO(data), metadata=big_metadata).object
            except StoreError as error:
                failure = error
                break
            earlier[info.id] = data
        assert failure is not None, "the disk never filled up"

        assert "disk is full" in str(failure), str(failure)
        assert tmp_entries(store) == []
        assert count(store, "objects") == objects_before
        assert count(store, "objects", "hash = :hash", {"hash": blake3.blake3(data).hexdigest()}) == 0
        assert_objects_intact(store, earlier)
        # what a failed commit may leave are orphans: files that no row refers to, never the reverse
        known = {row["hash"] for row in rows(store, "select hash from blobs")}
        assert {blob.name for blob in blob_files(store.root)} >= known

        filler.unlink()
        after = store.put("assets", io.BytesIO(b"after space was freed")).object
        assert read(store, after.id) == b"after space was freed"
        assert count(store, "objects") == objects_before + 1
