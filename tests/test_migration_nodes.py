"""Catalog migration 9 (docs/schema.md): a catalog made by the previous version keeps every
node and entry, its node ids are still never reused, and its nodes may then be symlinks and
special files. On both catalogs (SQLite rebuilds the `nodes` table; PostgreSQL changes the
check in place)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cas import names
from cas.catalog.migrate import migrate
from cas.catalog.schema import SCHEMA_VERSION
from cas.store import Store
from test_upgrade import raw_catalog, remake_catalog


def _v8_store(root: Path, database_url: str | None) -> None:
    """A store whose catalog stops at migration 8, with a bucket, a folder, two files (one with
    two names) and a deleted node that had the highest id."""
    store, _ = Store.init(root, database_url=database_url)
    store.close()
    remake_catalog(root, 8)

    def fill(tx) -> None:
        def node(kind: str, mode: int) -> int:
            return tx.value(
                "insert into nodes (bucket, kind, object_id, mode, uid, gid, mtime, ctime, xattrs) "
                "values ('b', :kind, null, :mode, 1, 2, 100.5, 200.25, '{\"user.a\": \"x\"}') returning id",
                {"kind": kind, "mode": mode})

        root_node, folder, file, other, gone = (node("dir", 0o755), node("dir", 0o700), node("file", 0o644),
                                                node("file", 0o600), node("file", 0o644))
        tx.execute("insert into buckets (name, root_node, created_at) values ('b', :root, 1)",
                   {"root": root_node})
        for parent, name, child in [(root_node, "folder", folder), (folder, "file", file),
                                    (root_node, "hard", file), (root_node, "other", other)]:
            tx.execute("insert into entries (parent_id, name, node_id) values (:p, :n, :c)",
                       {"p": parent, "n": name, "c": child})
        tx.execute("delete from nodes where id = :id", {"id": gone})

    catalog = raw_catalog(root)
    try:
        catalog.run(fill)
    finally:
        catalog.close()


def test_migration_9_keeps_the_tree_and_never_reuses_a_node_id(tmp_path: Path, database_url: str | None) -> None:
    root = tmp_path / "old"
    _v8_store(root, database_url)
    with Store.open(root, check_schema=False) as store:  # `assetfs migrate`: to 9 and on
        catalog = store.catalog
        migrate(catalog)
        assert catalog.run(lambda tx: tx.value("select max(version) as v from schema_version"), write=False) == \
            SCHEMA_VERSION
        rows = catalog.run(lambda tx: tx.all("select * from nodes order by id"), write=False)
        assert [(row["kind"], row["mode"], row["atime"], row["mtime"], row["ctime"], row["target"], row["rdev"])
                for row in rows] == [("dir", 0o755, 100.5, 100.5, 200.25, None, None),
                                     ("dir", 0o700, 100.5, 100.5, 200.25, None, None),
                                     ("file", 0o644, 100.5, 100.5, 200.25, None, None),
                                     ("file", 0o600, 100.5, 100.5, 200.25, None, None)]
        assert all(row["xattrs"] == '{"user.a": "x"}' and (row["uid"], row["gid"]) == (1, 2) for row in rows)
        highest_ever = rows[-1]["id"] + 1  # the deleted node's

        def after(tx) -> tuple[list[str], int, int]:
            root_node = names.bucket_root(tx, "b")
            folder = names.lookup(tx, root_node, "folder")["id"]
            listed = [row["name"] for row in names.list_entries(tx, root_node, "", 10)]
            link = names.create_node(tx, folder, "link", "symlink", 0o777, names.Owner(0, 0), 300.0, target="file")
            fifo = names.create_node(tx, folder, "fifo", "fifo", 0o644, names.Owner(0, 0), 300.0)
            return listed, link, fifo

        listed, link, fifo = catalog.run(after)
        assert listed == ["folder", "hard", "other"]
        assert link > highest_ever and fifo > link  # ids are never handed out twice, also after the rebuild
        attrs = catalog.run(lambda tx: names.node_attrs(tx, link), write=False)
        assert (attrs["kind"], attrs["target"], attrs["atime"]) == ("symlink", "file", 300.0)
        hard = catalog.run(lambda tx: names.lookup_attrs(tx, names.bucket_root(tx, "b"), "hard"), write=False)
        assert hard["nlink"] == 2
        top = catalog.run(lambda tx: names.node_attrs(tx, names.bucket_root(tx, "b")), write=False)
        assert (top["subdirs"], top["roots"]) == (1, 1)  # counted by the migration: one subfolder

        def dangling(tx) -> None:  # the foreign keys of entries still hold
            tx.execute("insert into entries (parent_id, name, node_id) values (:p, 'x', :missing)",
                       {"p": names.bucket_root(tx, "b"), "missing": 10**9})

        with pytest.raises(Exception, match="(?i)foreign key"):
            catalog.run(dangling)
        with pytest.raises(Exception, match="(?i)check"):
            catalog.run(lambda tx: tx.execute(
                "insert into nodes (bucket, kind, mode, uid, gid, mtime, ctime) values ('b', 'door', 0, 0, 0, 0, 0)"))
