"""The lifecycle of objects: delete to the trash, restore, holds, listing and buckets."""

import io
import time
import uuid
from pathlib import Path

import pytest

from cas.errors import NotFound
from cas.ids import new_object_id
from cas.store import Store
from helpers import count, tmp_entries

DAY = 86400.0


def put(store: Store, bucket: str, data: bytes, **options):
    result = store.put(bucket, io.BytesIO(data), **options)
    assert tmp_entries(store) == []
    return result.object


def alias_path(root: Path, bucket: str, object_id: str, filename: str) -> Path:
    return root / "objects" / bucket / object_id[-4:-2] / object_id[-2:] / object_id / filename


def blob_path(root: Path, hash_hex: str) -> Path:
    return root / "blobs" / hash_hex[0:2] / hash_hex[2:4] / hash_hex


def untouch(store: Store, object_id: str) -> None:
    """What GC does to an object it found referenced: clear touched_at."""
    store.catalog.run(lambda tx: tx.execute("update objects set touched_at = null where id = :id", {"id": object_id}))
    assert store.get(object_id).touched_at is None


# delete and restore ----------------------------------------------------------------------


def test_delete_moves_the_object_to_the_trash(store: Store) -> None:
    info = put(store, "assets", b"to be deleted", filename="gone.txt")

    before = time.time()
    deleted = store.delete(info.id)

    assert deleted.id == info.id
    assert deleted.deleted_at is not None and deleted.deleted_at >= before
    assert deleted.purge_after == pytest.approx(deleted.deleted_at + 7 * DAY)
    with pytest.raises(NotFound):
        store.get(info.id)
    with pytest.raises(NotFound):
        store.open_object(info.id)
    trashed = store.get_trashed(info.id)
    assert trashed.deleted_at == deleted.deleted_at
    assert trashed.purge_after == deleted.purge_after
    assert [listed.id for listed in store.list(deleted=True)] == [info.id]
    assert [listed.id for listed in store.list("assets", deleted=True)] == [info.id]
    assert list(store.list()) == []
    assert list(store.list("assets")) == []
    # the content stays until purge: trashed objects keep their blob and alias
    assert blob_path(store.root, info.hash).read_bytes() == b"to be deleted"
    assert alias_path(store.root, "assets", info.id, "gone.txt").read_bytes() == b"to be deleted"


def test_purge_after_uses_the_bucket_grace(store_root: Path) -> None:
    with open(store_root / "assetfs.toml", "a") as config:
        config.write('\n[buckets.quick]\ngrace = "1h30m"\n')
    with Store.open(store_root) as store:
        quick = put(store, "quick", b"short grace")
        normal = put(store, "normal", b"default grace")

        deleted_quick = store.delete(quick.id)
        deleted_normal = store.delete(normal.id)

        assert deleted_quick.purge_after == pytest.approx(deleted_quick.deleted_at + 5400)
        assert deleted_normal.purge_after == pytest.approx(deleted_normal.deleted_at + 7 * DAY)


def test_delete_twice_and_restore_twice_are_not_found(store: Store) -> None:
    info = put(store, "assets", b"once")
    with pytest.raises(NotFound):
        store.restore(info.id)  # not in the trash
    store.delete(info.id)
    with pytest.raises(NotFound):
        store.delete(info.id)
    with pytest.raises(NotFound):
        store.get(str(uuid.UUID(int=1)))
    with pytest.raises(NotFound):
        store.get_trashed(str(uuid.UUID(int=1)))
    store.restore(info.id)
    with pytest.raises(NotFound):
        store.restore(info.id)
    assert store.get(info.id).deleted_at is None


def test_names_are_removed_while_trashed_and_come_back_on_restore(store: Store) -> None:
    info = put(store, "docs", b"named", name="reports/2024/q1.txt")
    put(store, "docs", b"named", name="latest.txt")  # dedup: a second name for the same object
    assert store.get(info.id).names == ["latest.txt", "reports/2024/q1.txt"]

    store.delete(info.id)
    assert store.get_trashed(info.id).names == []
    # the names are free while the object is trashed
    other = put(store, "docs", b"something else", name="reports/2024/q2.txt")
    assert store.get(other.id).names == ["reports/2024/q2.txt"]

    untouch_time = time.time()
    restored = store.restore(info.id)

    assert restored.names == ["latest.txt", "reports/2024/q1.txt"]
    assert restored.deleted_at is None and restored.purge_after is None
    assert restored.touched_at is not None and restored.touched_at >= untouch_time
    again = store.get(info.id)
    assert again.names == ["latest.txt", "reports/2024/q1.txt"]
    assert store.get(other.id).names == ["reports/2024/q2.txt"]
    assert list(store.list(deleted=True)) == []


def test_restore_when_the_name_was_taken_meanwhile(store: Store) -> None:
    old = put(store, "docs", b"old content", name="page.html")
    store.delete(old.id)
    new = put(store, "docs", b"new content", name="page.html")

    restored = store.restore(old.id)

    assert restored.deleted_at is None
    assert restored.names == []
    assert store.get(old.id).names == []
    assert store.get(new.id).names == ["page.html"]
    with store.open_object(old.id) as file:
        assert file.read() == b"old content"


def test_restore_when_the_name_became_a_folder(store: Store) -> None:
    old = put(store, "docs", b"a file named box", name="box")
    kept = put(store, "docs", b"kept name", name="keep.txt")
    store.delete(old.id)
    store.delete(kept.id)
    inside = put(store, "docs", b"inside the folder box", name="box/item.txt")

    restored_old = store.restore(old.id)
    restored_kept = store.restore(kept.id)

    assert restored_old.names == []
    assert restored_kept.names == ["keep.txt"]
    assert store.get(inside.id).names == ["box/item.txt"]
    with store.open_object(old.id) as file:
        assert file.read() == b"a file named box"


# holds -----------------------------------------------------------------------------------


def test_hold_and_release(store: Store) -> None:
    info = put(store, "assets", b"held")

    store.hold(info.id, "app:profile:42")
    store.hold(info.id, "app:profile:42")  # holding twice is one hold
    store.hold(info.id, "another owner")
    assert store.holds(info.id) == ["another owner", "app:profile:42"]
    assert count(store, "holds") == 2

    untouch(store, info.id)
    before = time.time()
    store.release(info.id, "app:profile:42")

    assert store.holds(info.id) == ["another owner"]
    touched = store.get(info.id).touched_at
    assert touched is not None and touched >= before


def test_release_of_a_hold_that_does_not_exist(store: Store) -> None:
    info = put(store, "assets", b"held once")
    store.hold(info.id, "owner-a")
    untouch(store, info.id)

    with pytest.raises(NotFound):
        store.release(info.id, "owner-b")
    store.release(info.id, "owner-a")
    with pytest.raises(NotFound):
        store.release(info.id, "owner-a")
    with pytest.raises(NotFound):
        store.release(str(uuid.UUID(int=7)), "owner-a")

    assert store.holds(info.id) == []


def test_release_of_a_missing_hold_touches_nothing(store: Store) -> None:
    info = put(store, "assets", b"not held")
    untouch(store, info.id)

    with pytest.raises(NotFound):
        store.release(info.id, "nobody")

    assert store.get(info.id).touched_at is None


def test_hold_on_a_trashed_or_unknown_object_is_not_found(store: Store) -> None:
    info = put(store, "assets", b"trashed")
    store.delete(info.id)

    with pytest.raises(NotFound):
        store.hold(info.id, "owner")
    with pytest.raises(NotFound):
        store.hold(str(uuid.UUID(int=3)), "owner")

    assert count(store, "holds") == 0


# listing ---------------------------------------------------------------------------------


def test_list_streams_in_pages_in_id_order(store: Store) -> None:
    infos = []
    for index in range(10):
        before_ms = time.time_ns() // 1_000_000
        info = put(store, "many", f"object {index}".encode(), metadata={"index": str(index)})
        after_ms = time.time_ns() // 1_000_000
        parsed = uuid.UUID(info.id)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        # the first 48 bits are the Unix time in milliseconds at which the object was made
        assert before_ms <= parsed.int >> 80 <= after_ms
        infos.append(info)
    put(store, "elsewhere", b"another bucket")

    listed = list(store.list("many", page=3))

    assert [info.id for info in listed] == sorted(info.id for info in infos)
    assert {info.id for info in listed} == {info.id for info in infos}
    assert [info.metadata for info in listed] == [info.metadata for info in sorted(infos, key=lambda i: i.id)]
    # ids are time-ordered: the embedded milliseconds never decrease in the order of the puts
    stamps = [uuid.UUID(info.id).int >> 80 for info in infos]
    assert stamps == sorted(stamps)
    assert len(list(store.list(page=3))) == 11
    assert len(list(store.list(page=1))) == 11
    assert len(list(store.list(page=1000))) == 11


def test_list_reads_one_page_at_a_time(store: Store) -> None:
    """Later pages are read when they are reached: an object put meanwhile shows up at the end."""
    infos = [put(store, "paged", f"object {index}".encode()) for index in range(7)]

    listing = store.list("paged", page=3)
    first = next(listing)
    late = put(store, "paged", b"put while the listing was open")
    rest = list(listing)

    ids = [first.id] + [info.id for info in rest]
    assert ids[:7] == sorted(info.id for info in infos)
    assert late.id in ids
    assert ids == sorted(ids)


def test_list_returns_names(store: Store) -> None:
    named = put(store, "docs", b"named", name="x/y.txt")
    unnamed = put(store, "docs", b"unnamed")

    listed = {info.id: info.names for info in store.list("docs", page=1)}

    assert listed == {named.id: ["x/y.txt"], unnamed.id: []}


def test_ids_made_in_one_millisecond_are_still_increasing() -> None:
    ids = [new_object_id() for _ in range(2000)]
    assert ids == sorted(ids)


# buckets ---------------------------------------------------------------------------------


def test_buckets_lists_used_and_configured_buckets(store_root: Path) -> None:
    with open(store_root / "assetfs.toml", "a") as config:
        config.write('\n[buckets.configured]\ngrace = "1d"\n\n[buckets.avatars]\ndedupe = false\n')
    with Store.open(store_root) as store:
        assert store.buckets() == ["avatars", "configured"]

        put(store, "avatars", b"a")
        info = put(store, "used", b"b")
        store.delete(info.id)  # a bucket stays listed after its objects are deleted
        put(store, "also-used", b"c", name="named.txt")

        assert store.buckets() == ["also-used", "avatars", "configured", "used"]
