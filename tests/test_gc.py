"""The collector's passes, on both catalogs: what keeps an object alive (names, holds, rules),
the trash and its grace, purge, the blob sweep, orphans, dry runs, and bad rows and rules.

Time is passed explicitly (`now=`) where a pass would otherwise have to wait for a grace.
"""

import io
import os
import time
from pathlib import Path

import pytest

from casgc import run_once
from cas import names
from cas.errors import NotFound
from cas.store import Store
from conftest import run_cli
from gc_helpers import assert_consistent, configure, unused_blobs
from helpers import count, rows, snapshot

HOUR = 3600.0
DAY = 86400.0
GC_NOW = '[gc]\nmin_age = "0s"\n'


def open_store(store_root: Path, toml: str = GC_NOW) -> Store:
    configure(store_root, toml)
    return Store.open(store_root)


@pytest.fixture
def gc_store(store_root: Path):
    with open_store(store_root) as opened:
        yield opened


def put(store: Store, bucket: str, data: bytes, **options):
    return store.put(bucket, io.BytesIO(data), **options).object


def is_live(store: Store, object_id: str) -> bool:
    try:
        store.get(object_id)
    except NotFound:
        return False
    return True


def unlink_name(store: Store, bucket: str, name: str) -> None:
    """Remove a top-level name of the bucket's tree, as `rm` through the mount does."""
    store.catalog.run(lambda tx: names.unlink(tx, names.bucket_root(tx, bucket), name, time.time()))


# what keeps an object alive --------------------------------------------------------------


def test_unreferenced_object_goes_through_trash_purge_and_sweep(gc_store: Store) -> None:
    info = put(gc_store, "photos", b"nobody wants me")
    blob = gc_store.tree.blob_path(info.hash)

    first = run_once(gc_store)
    assert first.get("touched").counts["trashed"] == 1
    trashed = gc_store.get_trashed(info.id)
    assert trashed.purge_after == pytest.approx(first.now + 7 * DAY)
    assert blob.exists()

    later = run_once(gc_store, now=first.now + 7 * DAY + 1)
    assert later.get("purge").counts["purged"] == 1
    assert later.get("sweep").counts["swept"] == 1
    assert later.get("sweep").bytes_freed == len(b"nobody wants me")
    assert later.clean
    assert count(gc_store, "objects") == 0 and count(gc_store, "blobs") == 0
    assert not blob.exists()
    assert not gc_store.tree.alias_dir("photos", info.id).exists()
    assert_consistent(gc_store)


def test_young_objects_wait_for_min_age(store_root: Path) -> None:
    with open_store(store_root, '[gc]\nmin_age = "1h"\n') as store:
        info = put(store, "photos", b"just put")
        assert run_once(store).get("touched").examined == 0
        assert is_live(store, info.id)
        assert run_once(store, now=time.time() + HOUR + 1).get("touched").counts["trashed"] == 1


def test_named_object_is_untouched_and_stays(gc_store: Store) -> None:
    info = put(gc_store, "photos", b"named", name="a.png")
    report = run_once(gc_store, now=time.time() + 30 * DAY)
    assert report.get("touched").counts["kept"] == 1
    assert gc_store.get(info.id).touched_at is None
    assert run_once(gc_store, now=time.time() + 30 * DAY).get("touched").examined == 0  # untouched: not checked again


def test_object_with_two_names_survives_the_removal_of_one(gc_store: Store) -> None:
    first = put(gc_store, "photos", b"shared content", name="a.png")
    second = put(gc_store, "photos", b"shared content", name="b.png")
    assert first.id == second.id

    unlink_name(gc_store, "photos", "a.png")
    assert gc_store.get(first.id).touched_at is not None
    assert run_once(gc_store).get("touched").counts["kept"] == 1
    assert gc_store.get(first.id).names == ["b.png"]

    unlink_name(gc_store, "photos", "b.png")
    assert run_once(gc_store).get("touched").counts["trashed"] == 1
    assert not is_live(gc_store, first.id)


def test_hold_keeps_an_object_until_released(gc_store: Store) -> None:
    info = put(gc_store, "avatars", b"held")
    gc_store.hold(info.id, "app:user-7")
    assert run_once(gc_store).get("touched").counts["kept"] == 1
    assert is_live(gc_store, info.id)

    gc_store.release(info.id, "app:user-7")
    assert run_once(gc_store).get("touched").counts["trashed"] == 1
    assert not is_live(gc_store, info.id)
    with pytest.raises(NotFound):
        gc_store.hold(info.id, "app:late")  # a trashed object cannot be held


def test_rule_on_an_application_table_keeps_an_object_alive(store_root: Path) -> None:
    toml = GC_NOW + '[buckets.avatars]\nrules = ["select 1 from profile where photo_id = :id"]\n'
    with open_store(store_root, toml) as store:
        uuid_type = store.catalog.types["uuid"]
        store.catalog.run(lambda tx: tx.execute(f"create table profile (name text, photo_id {uuid_type})"))
        photo = put(store, "avatars", b"a face")
        other = put(store, "avatars", b"nobody's face")
        store.catalog.run(lambda tx: tx.execute("insert into profile (name, photo_id) values ('ann', :id)",
                                                {"id": photo.id}))

        report = run_once(store)
        assert report.get("touched").counts == {"kept": 1, "trashed": 1}
        assert is_live(store, photo.id) and not is_live(store, other.id)

        store.catalog.run(lambda tx: tx.execute("delete from profile where name = 'ann'"))
        store.catalog.run(lambda tx: tx.execute("update objects set touched_at = :now where id = :id",
                                                {"now": time.time(), "id": photo.id}))  # what the app's delete does
        assert run_once(store).get("touched").counts["trashed"] == 1
        assert not is_live(store, photo.id)


@pytest.mark.parametrize("rule", ["select exists (select 1 from profile where photo_id = :id)",
                                  "select count(*) from profile where photo_id = :id;"])
def test_rules_that_always_return_a_row_say_false_with_zero(store_root: Path, rule: str) -> None:
    with open_store(store_root, GC_NOW + f'[buckets.avatars]\nrules = ["{rule}"]\n') as store:
        store.catalog.run(lambda tx: tx.execute("create table profile (photo_id text)"))
        kept = put(store, "avatars", b"kept")
        gone = put(store, "avatars", b"gone")
        store.catalog.run(lambda tx: tx.execute("insert into profile values (:id)", {"id": kept.id}))
        assert run_once(store).get("touched").counts == {"kept": 1, "trashed": 1}
        assert is_live(store, kept.id) and not is_live(store, gone.id)


# the trash -------------------------------------------------------------------------------


def test_nothing_is_purged_before_purge_after(store_root: Path) -> None:
    with open_store(store_root, GC_NOW + '[bucket_defaults]\ngrace = "1h"\n') as store:
        info = put(store, "docs", b"deleted by mistake", name="report.pdf")
        deleted = store.delete(info.id)
        assert deleted.purge_after == pytest.approx(deleted.deleted_at + HOUR)

        for now in (time.time(), deleted.purge_after - 1):
            report = run_once(store, now=now)
            assert report.get("purge").examined == 0 and report.get("sweep").examined == 0
            assert store.get_trashed(info.id).id == info.id
            assert store.tree.blob_path(info.hash).exists()

        assert run_once(store, now=deleted.purge_after).get("purge").counts["purged"] == 1
        with pytest.raises(NotFound):
            store.get_trashed(info.id)
        assert not store.tree.blob_path(info.hash).exists()


def test_restore_within_grace_returns_the_object_with_its_names(gc_store: Store) -> None:
    info = put(gc_store, "docs", b"undo me", name="folder/undo.txt")
    gc_store.delete(info.id)
    report = run_once(gc_store, now=time.time() + 6 * DAY)
    assert report.get("purge").examined == 0

    listed = run_cli(gc_store.root, "trash", "ls", "docs").stdout.decode()
    assert info.id in listed
    run_cli(gc_store.root, "trash", "restore", info.id)
    restored = gc_store.get(info.id)
    assert restored.names == ["folder/undo.txt"]
    assert gc_store.open_object(info.id).read() == b"undo me"
    assert run_once(gc_store).get("touched").counts["kept"] == 1
    assert_consistent(gc_store)


def test_object_trashed_by_gc_can_be_restored_and_is_then_checked_again(gc_store: Store) -> None:
    info = put(gc_store, "docs", b"orphaned upload")
    run_once(gc_store)
    restored = gc_store.restore(info.id)
    assert restored.touched_at is not None
    gc_store.hold(info.id, "app")
    assert run_once(gc_store).get("touched").counts["kept"] == 1


def test_trash_purge_frees_space_before_the_grace_ends(gc_store: Store) -> None:
    old = put(gc_store, "docs", b"old trash")
    new = put(gc_store, "docs", b"new trash")
    gc_store.delete(old.id)
    gc_store.catalog.run(lambda tx: tx.execute("update objects set deleted_at = deleted_at - 7200 where id = :id",
                                               {"id": old.id}))
    gc_store.delete(new.id)

    out = run_cli(gc_store.root, "trash", "purge", "--older-than", "1h").stdout.decode()
    assert "purge: 1 examined, 1 purged" in out
    assert [info.id for info in gc_store.list(deleted=True)] == [new.id]
    assert not gc_store.tree.blob_path(old.hash).exists()

    run_cli(gc_store.root, "trash", "purge", "--all")
    assert list(gc_store.list(deleted=True)) == []
    assert unused_blobs(gc_store) == []
    assert_consistent(gc_store)


# expiry, sweep, orphans ------------------------------------------------------------------


def test_expired_object_is_trashed_even_when_referenced(gc_store: Store) -> None:
    soon = put(gc_store, "tmp", b"short-lived", name="link.txt", expires_at=time.time() + HOUR)
    gc_store.hold(soon.id, "app")
    assert run_once(gc_store).get("expired").examined == 0
    report = run_once(gc_store, now=time.time() + HOUR + 1)
    assert report.get("expired").counts["trashed"] == 1
    assert gc_store.get_trashed(soon.id).id == soon.id


def test_blob_shared_by_two_buckets_is_swept_only_when_both_are_gone(gc_store: Store) -> None:
    first = put(gc_store, "a", b"same bytes")
    second = put(gc_store, "b", b"same bytes", name="keep.bin")
    blob = gc_store.tree.blob_path(first.hash)
    run_once(gc_store, now=time.time())
    report = run_once(gc_store, now=time.time() + 8 * DAY)
    assert report.get("purge").counts["purged"] == 1
    assert report.get("sweep").examined == 0
    assert blob.exists() and gc_store.open_object(second.id).read() == b"same bytes"

    gc_store.delete(second.id)
    run_once(gc_store, now=time.time() + 8 * DAY)
    assert not blob.exists() and unused_blobs(gc_store) == []


def test_content_put_again_after_a_sweep_is_stored_again(gc_store: Store) -> None:
    info = put(gc_store, "a", b"come back")
    gc_store.delete(info.id)
    run_once(gc_store, now=time.time() + 8 * DAY)
    assert not gc_store.tree.blob_path(info.hash).exists()
    again = put(gc_store, "a", b"come back", name="back.txt")
    assert gc_store.open_object(again.id).read() == b"come back"
    assert_consistent(gc_store)


def test_put_reinstalls_a_blob_whose_row_outlived_its_file(gc_store: Store) -> None:
    """A sweep killed between unlinking and committing leaves a row without file or object."""
    info = put(gc_store, "a", b"half swept", name="x")
    gc_store.delete(info.id)
    gc_store.catalog.run(lambda tx: tx.execute("delete from objects where id = :id", {"id": info.id}))
    gc_store.tree.remove_blob(info.hash)
    gc_store.tree.remove_alias("a", info.id)
    again = put(gc_store, "a", b"half swept")
    assert gc_store.open_object(again.id).read() == b"half swept"
    assert_consistent(gc_store, orphan_grace=0)


def test_orphans_older_than_the_grace_are_removed(store_root: Path) -> None:
    with open_store(store_root, 'orphan_grace = "1h"\n' + GC_NOW) as store:
        kept = put(store, "a", b"committed", name="kept.txt")
        old, young = time.time() - 2 * HOUR, time.time()
        orphan_blob = store.tree.blob_path("ab" * 32)
        orphan_blob.parent.mkdir(parents=True)
        orphan_blob.write_bytes(b"left by a crash")
        orphan_alias = store.tree.alias_path("a", "01234567-89ab-7def-8123-456789abcdef", "f.txt")
        orphan_alias.parent.mkdir(parents=True)
        orphan_alias.write_bytes(b"left by a crash")
        staging = store.tree.tmp / "stage-crashed"
        staging.write_bytes(b"partial")
        young_staging = store.tree.tmp / "stage-in-flight"
        young_staging.write_bytes(b"in flight")
        for path in (orphan_blob, orphan_alias.parent, staging):
            os.utime(path, (old, old))
        os.utime(young_staging, (young, young))

        assert run_once(store, dry_run=True).get("orphans").counts == {
            "orphan_blob": 1, "orphan_alias": 1, "orphan_staging": 1}
        assert orphan_blob.exists()
        report = run_once(store)
        assert report.get("orphans").counts == {"orphan_blob": 1, "orphan_alias": 1, "orphan_staging": 1}
        assert not orphan_blob.exists() and not orphan_alias.parent.exists() and not staging.exists()
        assert young_staging.exists()
        assert store.open_object(kept.id).read() == b"committed"


def test_dry_run_changes_nothing(gc_store: Store) -> None:
    put(gc_store, "a", b"unreferenced")
    trashed = put(gc_store, "a", b"trashed")
    put(gc_store, "a", b"named", name="n")
    gc_store.delete(trashed.id)
    before = snapshot(gc_store)
    report = run_once(gc_store, now=time.time() + 8 * DAY, dry_run=True)
    assert report.dry_run
    assert report.get("touched").counts == {"kept": 1, "trashed": 1}
    assert report.get("purge").counts == {"purged": 1}
    assert snapshot(gc_store) == before


# bad rows and bad rules ------------------------------------------------------------------


def insert_object_row(store: Store, bucket: str, content: bytes) -> str:
    """An object row the store could not have made (as an application's direct SQL might)."""
    good = put(store, "scratch", content, name="source")
    bad_id = "01890000-0000-7000-8000-000000000001"
    store.catalog.run(lambda tx: tx.execute(
        "insert into objects (id, bucket, hash, size, content_type, filename, metadata, created_at, touched_at) "
        "values (:id, :bucket, :hash, :size, 'text/plain', 'x', '{}', 0, 0)",
        {"id": bad_id, "bucket": bucket, "hash": good.hash, "size": good.size}))
    return bad_id


@pytest.mark.parametrize("bucket", ["ghost", "../../etc"])
def test_a_row_of_an_unknown_bucket_is_reported_and_the_pass_goes_on(gc_store: Store, bucket: str) -> None:
    bad_id = insert_object_row(gc_store, bucket, b"poison")
    victims = [put(gc_store, "a", f"unreferenced {n}".encode()) for n in range(5)]

    report = run_once(gc_store)
    touched = report.get("touched")
    assert touched.errors == 1 and bad_id in touched.messages[0]
    assert touched.counts["trashed"] == 5 and not report.clean
    assert not any(is_live(gc_store, victim.id) for victim in victims)
    assert is_live(gc_store, bad_id)
    assert rows(gc_store, "select pass, item, attempts from gc_failures") == [
        {"pass": "touched", "item": bad_id, "attempts": 1}]

    again = run_once(gc_store)  # within the backoff: left alone, counted as deferred
    assert again.get("touched").deferred == 1 and again.get("touched").errors == 0
    retried = run_once(gc_store, now=time.time() + 61)
    assert retried.get("touched").errors == 1
    assert rows(gc_store, "select attempts from gc_failures") == [{"attempts": 2}]

    gc_store.catalog.run(lambda tx: tx.execute("update objects set bucket = 'a' where id = :id", {"id": bad_id}))
    healed = run_once(gc_store, now=time.time() + DAY)
    assert healed.get("touched").errors == 0 and healed.get("touched").counts["trashed"] == 1
    assert count(gc_store, "gc_failures") == 0


@pytest.mark.parametrize("rule", ["select 1 from no_such_table where id = :id",
                                  "select 1 from profile where photo_id = :id or 1 / (length(name) - 3) = 1",
                                  "delete from profile where photo_id = :id returning 1"])
def test_a_bucket_whose_rule_fails_is_skipped_and_the_others_collected(store_root: Path, rule: str) -> None:
    toml = GC_NOW + f'[buckets.broken]\nrules = ["{rule}"]\n'
    with open_store(store_root, toml) as store:
        store.catalog.run(lambda tx: tx.execute("create table profile (name text, photo_id text)"))
        store.catalog.run(lambda tx: tx.execute("insert into profile values ('bob', 'x')"))  # length 3: 1 / 0
        spared = []
        collected = []
        for n in range(6):  # interleaved, so both buckets share every batch
            spared.append(put(store, "broken", f"spared {n}".encode()))
            collected.append(put(store, "fine", f"collected {n}".encode()))

        report = run_once(store)
        touched = report.get("touched")
        if "1 /" in rule and store.catalog.dialect == "sqlite":
            # SQLite's 1 / 0 is NULL, not an error: the rule simply finds nothing
            assert touched.counts["trashed"] == 12
            return
        assert list(touched.skipped_buckets) == ["broken"] and not report.clean
        assert touched.counts["trashed"] == 6 and touched.counts["skipped"] == 6
        assert all(is_live(store, info.id) for info in spared)
        assert not any(is_live(store, info.id) for info in collected)
        assert count(store, "profile") == 1
