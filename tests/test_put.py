"""Putting content into a store: bytes, content types, metadata, dedup, aliases, names, repair.

Every put goes through `put()` below, which also checks that tmp/ is empty afterwards,
whether the put succeeded or failed.
"""

import io
import os
import stat
import time
from pathlib import Path

import blake3
import pytest

from cas.blobtree import STAGE_CHUNK, WRITEBACK_STEP, SyncTrace
from cas.errors import BadInput
from cas.names import LET_GO
from cas.store import Store
from helpers import SMALL_PDF, alias_files, blob_files, count, small_png, snapshot, tmp_entries


def put(store: Store, bucket: str, source, **options):
    try:
        return store.put(bucket, source, **options)
    finally:
        assert tmp_entries(store) == [], "tmp/ must be empty after a put"


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def blob_path(root: Path, hash_hex: str) -> Path:
    return root / "blobs" / hash_hex[0:2] / hash_hex[2:4] / hash_hex


def alias_path(root: Path, bucket: str, object_id: str, filename: str) -> Path:
    return root / "objects" / bucket / object_id[-4:-2] / object_id[-2:] / object_id / filename


def read(store: Store, object_id: str) -> bytes:
    with store.open_object(object_id) as file:
        return file.read()


def configure_buckets(store_root: Path, text: str) -> Store:
    with open(store_root / "assetfs.toml", "a") as config:
        config.write("\n" + text)
    return Store.open(store_root)


# bytes in, bytes out ---------------------------------------------------------------------


def test_put_from_path_stores_exact_bytes(store: Store, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    source = tmp_path / "photo.bin"
    source.write_bytes(data)

    result = put(store, "assets", source)

    info = result.object
    assert result.deduplicated is False
    assert result.name is None
    assert info.bucket == "assets"
    assert info.size == len(data)
    assert info.hash == b3(data)
    assert info.filename == "photo.bin"
    assert info.deleted_at is None and info.touched_at is not None
    assert store.get(info.id) == info
    assert read(store, info.id) == data
    assert alias_path(store.root, "assets", info.id, "photo.bin").read_bytes() == data


def test_put_from_stream(store: Store) -> None:
    data = b"streamed content\n" * 1000

    result = put(store, "assets", io.BytesIO(data))
    named = put(store, "other", io.BytesIO(data), filename="given.txt")

    assert result.object.filename == "upload"
    assert named.object.filename == "given.txt"
    for info in (result.object, named.object):
        assert info.size == len(data)
        assert info.hash == b3(data)
        assert read(store, info.id) == data
    assert alias_path(store.root, "other", named.object.id, "given.txt").read_bytes() == data


def test_put_larger_than_one_chunk(store: Store) -> None:
    """Content spanning several staging chunks hashes and reads back exactly."""
    data = os.urandom(9 * 1024 * 1024 + 123)

    info = put(store, "big", io.BytesIO(data)).object

    assert info.size == len(data)
    assert info.hash == b3(data)
    assert read(store, info.id) == data


@pytest.mark.parametrize("size", [STAGE_CHUNK - 1, STAGE_CHUNK, STAGE_CHUNK + 1, 2 * WRITEBACK_STEP,
                                  3 * WRITEBACK_STEP + STAGE_CHUNK // 2 + 7])
def test_put_sizes_around_the_staging_steps(store: Store, tmp_path: Path, size: int) -> None:
    """A file a byte either side of a chunk, or past a few writeback steps, is stored whole
    and hashed right, from a path and from a stream."""
    data = os.urandom(size)
    source = tmp_path / "sized.bin"
    source.write_bytes(data)

    from_path = put(store, "sized", source).object
    from_stream = put(store, "streamed", io.BytesIO(data)).object

    for info in (from_path, from_stream):
        assert (info.size, info.hash) == (size, b3(data))
        assert read(store, info.id) == data


def test_staging_a_large_file_starts_its_writeback_before_the_fsync(store: Store) -> None:
    """Issue 9, point 8: staging a large file starts the writeback of what it wrote as it
    goes, so the disk writes during the copy; the fsync that makes the put durable still
    comes after, before the commit."""
    data = os.urandom(4 * WRITEBACK_STEP + 5)
    SyncTrace.calls = []
    try:
        info = put(store, "big", io.BytesIO(data)).object
        calls = list(SyncTrace.calls)
    finally:
        SyncTrace.calls = None

    blob = store.tree.blob_path(info.hash).stat().st_ino
    writebacks = [index for index, call in enumerate(calls) if call == ("writeback", blob)]
    assert len(writebacks) >= 2, calls
    assert ("fsync", blob) in calls[writebacks[-1]:], "the staged file must be fsynced after its writeback started"
    assert read(store, info.id) == data


def test_staging_a_small_file_starts_no_writeback(store: Store) -> None:
    """Files that fit in a batch's flush are left to it (one syncfs for many)."""
    SyncTrace.calls = []
    try:
        put(store, "small", io.BytesIO(os.urandom(WRITEBACK_STEP)))
        assert [call for call in SyncTrace.calls if call[0] == "writeback"] == []
    finally:
        SyncTrace.calls = None


def test_put_empty_content(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "empty.dat"
    source.write_bytes(b"")

    info = put(store, "assets", source).object

    assert info.size == 0
    assert info.hash == b3(b"")
    assert read(store, info.id) == b""
    assert blob_path(store.root, info.hash).stat().st_size == 0
    assert info.content_type == "application/octet-stream"
    # an empty stream is the same content: deduplicated
    again = put(store, "assets", io.BytesIO(b""))
    assert again.deduplicated and again.object.id == info.id


# content type and metadata ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data, filename, expected",
    [
        (small_png(), "upload", "image/png"),
        (small_png(), "misleading.txt", "image/png"),  # the data wins over the extension
        (SMALL_PDF, "document", "application/pdf"),
        (b'{"key": [1, 2, 3]}\n', "data.json", "application/json"),
        (b"body { color: red }\n", "style.css", "text/css"),
        (b"\x00\x01\x02\x03 no known format", "blob", "application/octet-stream"),
    ],
)
def test_content_type_detected_from_data(store: Store, data: bytes, filename: str, expected: str) -> None:
    info = put(store, "assets", io.BytesIO(data), filename=filename).object

    assert info.content_type == expected
    assert store.get(info.id).content_type == expected
    assert read(store, info.id) == data


def test_content_type_given_explicitly(store: Store) -> None:
    info = put(store, "assets", io.BytesIO(small_png()), content_type="application/x-custom; v=2").object

    assert info.content_type == "application/x-custom; v=2"
    assert store.get(info.id).content_type == "application/x-custom; v=2"


def test_metadata_is_stored(store: Store) -> None:
    metadata = {"owner": "alice", "source.url": "https://example.org/a.png", "width_px": "640", "note": "héllo"}

    info = put(store, "assets", io.BytesIO(b"with metadata"), metadata=metadata).object

    assert info.metadata == metadata
    assert store.get(info.id).metadata == metadata
    assert [listed.metadata for listed in store.list("assets")] == [metadata]


# dedup -----------------------------------------------------------------------------------


def test_dedup_within_a_bucket(store: Store, tmp_path: Path) -> None:
    data = b"same content twice"
    source = tmp_path / "one.txt"
    source.write_bytes(data)

    first = put(store, "assets", source)
    second = put(store, "assets", io.BytesIO(data), filename="two.txt")

    assert first.deduplicated is False
    assert second.deduplicated is True
    assert second.object.id == first.object.id
    assert second.object.filename == "one.txt"  # the existing object, unchanged
    assert count(store, "objects") == 1
    assert count(store, "blobs") == 1
    assert len(blob_files(store.root)) == 1
    assert alias_files(store.root) == [alias_path(store.root, "assets", first.object.id, "one.txt")]
    assert blob_path(store.root, first.object.hash).stat().st_nlink == 2


def test_no_dedup_onto_a_trashed_object(store: Store) -> None:
    first = put(store, "assets", io.BytesIO(b"deleted then put again")).object
    store.delete(first.id)

    second = put(store, "assets", io.BytesIO(b"deleted then put again"))

    assert second.deduplicated is False
    assert second.object.id != first.id
    assert store.get_trashed(first.id).hash == second.object.hash


def test_bucket_with_dedupe_off_gets_a_new_object_each_time(store_root: Path) -> None:
    data = b"stored twice on purpose"
    with configure_buckets(store_root, "[buckets.raw]\ndedupe = false\n") as store:
        assert store.config.bucket("raw").dedupe is False

        first = put(store, "raw", io.BytesIO(data))
        second = put(store, "raw", io.BytesIO(data))

        assert first.deduplicated is False and second.deduplicated is False
        assert first.object.id != second.object.id
        assert first.object.hash == second.object.hash
        assert count(store, "objects", "bucket = 'raw'") == 2
        # physically still one blob, with one link per object
        assert len(blob_files(store_root)) == 1
        blob = blob_path(store_root, first.object.hash)
        assert blob.stat().st_nlink == 3
        for info in (first.object, second.object):
            assert alias_path(store_root, "raw", info.id, info.filename).stat().st_ino == blob.stat().st_ino
            assert read(store, info.id) == data
        # other buckets keep the default
        assert put(store, "cooked", io.BytesIO(data)).deduplicated is False
        assert put(store, "cooked", io.BytesIO(data)).deduplicated is True


def test_physical_dedup_across_buckets(store: Store) -> None:
    data = os.urandom(4096)
    buckets = ["avatars", "attachments", "fonts"]

    infos = [put(store, bucket, io.BytesIO(data), filename=f"{bucket}.bin").object for bucket in buckets]

    assert len({info.id for info in infos}) == 3
    assert {info.hash for info in infos} == {b3(data)}
    hash_hex = b3(data)
    blob = blob_path(store.root, hash_hex)
    assert blob_files(store.root) == [blob]
    assert count(store, "blobs") == 1
    blob_stat = blob.stat()
    assert blob_stat.st_nlink == 1 + len(buckets)
    assert stat.S_IMODE(blob_stat.st_mode) == 0o444
    assert len(hash_hex) == 64 and all(c in "0123456789abcdef" for c in hash_hex)
    assert blob.relative_to(store.root).parts == ("blobs", hash_hex[0:2], hash_hex[2:4], hash_hex)
    for bucket, info in zip(buckets, infos):
        alias = alias_path(store.root, bucket, info.id, f"{bucket}.bin")
        assert alias.stat().st_ino == blob_stat.st_ino
        assert os.path.samefile(alias, blob)
        assert alias.read_bytes() == data
    assert len(alias_files(store.root)) == len(buckets)


def test_blob_files_are_read_only(store: Store, tmp_path: Path) -> None:
    for index in range(3):
        put(store, "assets", io.BytesIO(f"content {index}".encode()))
    blobs = blob_files(store.root)
    assert len(blobs) == 3
    for blob in blobs:
        assert stat.S_IMODE(blob.stat().st_mode) == 0o444
        assert blob.name == b3(blob.read_bytes())


# names -----------------------------------------------------------------------------------


def test_put_with_a_name(store: Store) -> None:
    result = put(store, "docs", io.BytesIO(b"first version"), name="a/b/c.txt")

    assert result.name == "a/b/c.txt"
    assert result.object.names == ["a/b/c.txt"]
    assert result.object.filename == "c.txt"
    assert store.get(result.object.id).names == ["a/b/c.txt"]


def test_second_put_to_a_name_replaces_it_and_touches_the_old_object(store: Store) -> None:
    old = put(store, "docs", io.BytesIO(b"first version"), name="a/b/c.txt").object
    # as GC does once it found the object referenced: it is no longer touched
    store.catalog.run(lambda tx: tx.execute("update objects set touched_at = null where id = :id", {"id": old.id}))
    assert store.get(old.id).touched_at is None

    new = put(store, "docs", io.BytesIO(b"second version"), name="a/b/c.txt").object

    assert new.id != old.id
    assert new.names == ["a/b/c.txt"]
    replaced = store.get(old.id)
    assert replaced.names == []
    assert replaced.touched_at == LET_GO  # lost its last name: the next check takes it at once
    assert read(store, old.id) == b"first version"  # replaced, not deleted
    assert read(store, new.id) == b"second version"


def test_put_same_content_to_a_name_is_a_dedup_hit(store: Store) -> None:
    first = put(store, "docs", io.BytesIO(b"same"), name="one.txt").object

    second = put(store, "docs", io.BytesIO(b"same"), name="two.txt")

    assert second.deduplicated and second.object.id == first.id
    assert store.get(first.id).names == ["one.txt", "two.txt"]


@pytest.mark.parametrize("name", ["a/b/c.txt/d.txt", "a/b/c.txt/x/y", "a/b"])
def test_put_with_a_name_through_a_file_or_onto_a_folder_changes_nothing(store: Store, name: str) -> None:
    put(store, "docs", io.BytesIO(b"a file in the way"), name="a/b/c.txt")
    before = snapshot(store)
    objects_before, blobs_before = count(store, "objects"), len(blob_files(store.root))

    with pytest.raises(BadInput):
        put(store, "docs", io.BytesIO(b"new content that must not be stored"), name=name)

    assert count(store, "objects") == objects_before
    assert len(blob_files(store.root)) == blobs_before
    assert snapshot(store) == before


# repair on a dedup hit -------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["remove", "truncate"])
def test_dedup_hit_repairs_a_damaged_blob(store: Store, damage: str) -> None:
    data = os.urandom(50_000)
    info = put(store, "assets", io.BytesIO(data), filename="file.bin").object
    blob = blob_path(store.root, info.hash)
    alias = alias_path(store.root, "assets", info.id, "file.bin")
    if damage == "remove":
        blob.unlink()
    else:
        os.truncate(blob, 1000)  # root may write a 0444 file; the alias shares the inode
        assert alias.stat().st_size == 1000

    again = put(store, "assets", io.BytesIO(data))

    assert again.deduplicated and again.object.id == info.id
    assert blob.stat().st_size == len(data)
    assert blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert alias.stat().st_ino == blob.stat().st_ino
    assert blob.stat().st_nlink == 2
    assert read(store, info.id) == data


def test_repair_relinks_aliases_in_every_bucket(store: Store) -> None:
    data = b"shared by two buckets" * 100
    first = put(store, "one", io.BytesIO(data)).object
    second = put(store, "two", io.BytesIO(data)).object
    blob = blob_path(store.root, first.hash)
    blob.unlink()

    put(store, "three", io.BytesIO(data))

    assert blob.read_bytes() == data
    assert blob.stat().st_nlink == 4
    for bucket, info in (("one", first), ("two", second)):
        assert alias_path(store.root, bucket, info.id, info.filename).stat().st_ino == blob.stat().st_ino


# expiry ----------------------------------------------------------------------------------


def test_put_with_expiry_dedups_only_onto_objects_living_long_enough(store: Store) -> None:
    data = b"expiring content"
    now = time.time()

    short = put(store, "tmpfiles", io.BytesIO(data), expires_at=now + 3600).object
    assert short.expires_at == pytest.approx(now + 3600)

    # asked to live longer than `short`: a new object
    longer = put(store, "tmpfiles", io.BytesIO(data), expires_at=now + 7200)
    assert longer.deduplicated is False and longer.object.id != short.id

    # asked to live less long than `short`: `short` will do
    shorter = put(store, "tmpfiles", io.BytesIO(data), expires_at=now + 600)
    assert shorter.deduplicated is True and shorter.object.id == short.id

    # asked to live forever: none of the expiring objects will do
    forever = put(store, "tmpfiles", io.BytesIO(data))
    assert forever.deduplicated is False
    assert forever.object.id not in (short.id, longer.object.id)
    assert forever.object.expires_at is None

    # and an object that never expires serves every later put, expiring or not
    assert put(store, "tmpfiles", io.BytesIO(data)).object.id == forever.object.id
    assert put(store, "tmpfiles", io.BytesIO(data), expires_at=now + 99999).object.id in (
        forever.object.id,
    )
    assert count(store, "objects", "bucket = 'tmpfiles'") == 3
    assert len(blob_files(store.root)) == 1
