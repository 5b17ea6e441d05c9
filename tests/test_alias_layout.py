"""Aliases sharded by the id's random part (issue 8, point 9): the layout, its migration from
layout 1 (`objects/<bucket>/<id[0:2]>/<id>`, all in `01` for UUIDv7 ids), killed midway and
run while the store is in use, and an fsck that knows both places. On both catalogs."""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

from cas.fsck import check_store, find_orphans
from cas.layout import recorded_version
from cas.model import ObjectInfo
from cas.store import Store
from conftest import ASSETFS, run_cli
from fusefs.inodes import BucketDir
from fusefs.view import StoreView

COUNT = 12


def put_objects(store: Store, count: int = COUNT, bucket: str = "photos") -> list[ObjectInfo]:
    return [store.put(bucket, io.BytesIO(b"content %d" % number), name=f"f{number:03d}.txt").object
            for number in range(count)]


def to_layout_1(store: Store) -> None:
    """Make the store what an assetfs before layout 2 left: every alias folder at
    objects/<bucket>/<id[0:2]>/<id>, and the catalog saying so."""
    for info in [*store.list(), *store.list(deleted=True)]:
        old = store.tree.old_alias_dir(info.bucket, info.id)
        old.parent.mkdir(parents=True, exist_ok=True)
        os.rename(store.tree.alias_dir(info.bucket, info.id), old)
    store.catalog.run(lambda tx: tx.execute("update store_layout set version = 1 where part = 'aliases'"), write=True)


def kinds(store: Store, **options) -> list[str]:
    return sorted(problem.kind for problem in check_store(store, orphan_grace=0, **options).problems)


def assert_all_in_place(store: Store) -> None:
    """Every live or trashed object's alias is a hardlink of its blob at its layout-2 place;
    nothing is left at a layout-1 place; fsck (orphans of any age included) is clean."""
    for info in [*store.list(), *store.list(deleted=True)]:
        alias = store.tree.alias_path(info.bucket, info.id, info.filename)
        assert os.path.samefile(alias, store.tree.blob_path(info.hash)), alias
    assert not [path for path in store.tree.objects.glob("*/*/*") if path.name.count("-") == 4]
    assert kinds(store) == []


def test_aliases_are_sharded_by_the_last_hex_digits_of_the_id(store: Store) -> None:
    infos = put_objects(store)
    for info in infos:
        alias = store.tree.alias_path(info.bucket, info.id, info.filename)
        assert alias.relative_to(store.root).parts == ("objects", "photos", info.id[-4:-2], info.id[-2:], info.id,
                                                       info.filename)
        assert os.path.samefile(alias, store.tree.blob_path(info.hash))
    assert len({info.id[0:2] for info in infos}) == 1  # what layout 1 sharded by: all alike
    assert len(list((store.root / "objects" / "photos").iterdir())) > 1
    assert store.catalog.run(recorded_version) == 2  # a new store starts at layout 2


def test_migration_moves_every_old_alias_and_fsck_knows_both_layouts(store: Store) -> None:
    infos = put_objects(store)
    store.delete(infos[0].id)  # the trash's aliases move too
    to_layout_1(store)
    assert kinds(store) == ["old_alias_place"] * COUNT
    assert find_orphans(store, orphan_grace=0, repair=True).problems == []  # the collector leaves them
    dry = run_cli(store.root, "migrate", "--dry-run")
    assert dry.stdout.decode().splitlines()[-1] == f"alias layout 1: {COUNT} aliases to move to layout 2"
    assert kinds(store) == ["old_alias_place"] * COUNT
    moved = run_cli(store.root, "migrate")
    assert moved.stdout.decode().splitlines()[-1] == f"alias layout 1 → 2: moved {COUNT} aliases"
    assert store.catalog.run(recorded_version) == 2
    assert_all_in_place(store)
    assert run_cli(store.root, "migrate").stdout.decode().splitlines()[-1] == "alias layout 2: up to date"
    assert run_cli(store.root, "cat", infos[1].id).stdout == b"content 1"


def test_fsck_repair_moves_an_old_alias_and_makes_a_missing_one(store: Store) -> None:
    infos = put_objects(store, 3)
    to_layout_1(store)
    missing = store.tree.old_alias_dir("photos", infos[2].id)
    for entry in missing.iterdir():
        entry.unlink()
    missing.rmdir()
    assert kinds(store) == ["missing_alias", "old_alias_place", "old_alias_place"]
    report = check_store(store, repair=True, orphan_grace=0)
    assert report.clean and len(report.problems) == 3
    assert_all_in_place(store)


def test_an_alias_at_the_old_place_is_removed_renamed_and_relinked_there(store: Store) -> None:
    """Before (or during) the migration, what changes or removes an alias finds it at the
    layout-1 place: purging, a rename its filename follows, a leftover beside a new one."""
    infos = put_objects(store, 3)
    to_layout_1(store)
    store.delete(infos[0].id)
    run_cli(store.root, "trash", "purge", "--all")
    assert not store.tree.old_alias_dir("photos", infos[0].id).exists()
    StoreView(store).rename(BucketDir("photos"), "f001.txt", BucketDir("photos"), "renamed.txt", replace=False)
    assert store.get(infos[1].id).filename == "renamed.txt"
    assert not store.tree.old_alias_dir("photos", infos[1].id).exists()
    leftover, new = store.tree.old_alias_dir("photos", infos[2].id), store.tree.alias_dir("photos", infos[2].id)
    new.mkdir(parents=True)
    os.link(leftover / "f002.txt", new / "f002.txt")  # an alias at the new place, the old one still there
    assert kinds(store) == ["orphan_alias"]
    run_cli(store.root, "migrate")
    assert not leftover.exists()
    assert_all_in_place(store)


def test_a_killed_migration_leaves_every_alias_whole_and_a_second_run_finishes(store: Store) -> None:
    put_objects(store)
    to_layout_1(store)
    killed = run_cli(store.root, "migrate", check=None, env={"ASSETFS_CRASH_AT": "layout:alias-moved"})
    assert killed.returncode == -9
    assert kinds(store) == ["old_alias_place"] * (COUNT - 1)  # one moved, none lost or half-moved
    assert store.catalog.run(recorded_version) == 1
    run_cli(store.root, "migrate")
    assert_all_in_place(store)


def test_the_migration_runs_while_the_store_is_in_use(store: Store, tmp_path: Path) -> None:
    infos = put_objects(store)
    to_layout_1(store)
    marker = tmp_path / "paused"
    migration = subprocess.Popen([ASSETFS, "--store", str(store.root), "migrate"],
                                 env={**os.environ, "ASSETFS_PAUSE_AT": f"layout:alias-moved@{marker}"},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():  # paused after its first move
            assert migration.poll() is None and time.monotonic() < deadline, "the migration did not pause"
            time.sleep(0.01)
        fresh = put_objects(store, 3, bucket="fresh")
        for info in (infos[0], infos[-1]):  # the one it moved, and one it has not reached yet
            store.delete(info.id)
        run_cli(store.root, "trash", "purge", "--all")
        StoreView(store).rename(BucketDir("photos"), "f005.txt", BucketDir("photos"), "five.txt", replace=False)
        while migration.poll() is None:  # let each further move go on at once
            marker.unlink(missing_ok=True)
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        if migration.poll() is None:
            migration.kill()
        migration.wait()
    assert migration.returncode == 0, migration.stderr.read()
    assert store.catalog.run(recorded_version) == 2
    assert {info.id for info in store.list("photos")} == {info.id for info in infos[1:-1]}
    assert all(store.tree.alias_dir("fresh", info.id).is_dir() for info in fresh)
    assert store.get(infos[5].id).filename == "five.txt"
    assert_all_in_place(store)
