"""A store's id is written in its folder and in its catalog (cas/storeid.py): a server whose
folder is not the one the catalog knows (several servers on one PostgreSQL catalog must
share one blob tree) refuses to run, in one line, and changes nothing."""

import os
import shutil
from pathlib import Path

import pytest

from cas import storeid
from cas.store import Store
from helpers import file_tree
from tests.conftest import run_cli


def catalog_id(store: Store) -> str | None:
    return store.catalog.run(storeid.catalog_id, write=False)


def second_folder(store_root: Path, tmp_path: Path) -> Path:
    """A server's folder made as if the shared filesystem were not mounted: the store's
    configuration (so the same catalog), empty blobs/ and objects/."""
    other = tmp_path / "server-b"
    for part in ("blobs", "objects", "tmp"):
        (other / part).mkdir(parents=True)
    shutil.copy2(store_root / "assetfs.toml", other / "assetfs.toml")
    os.chmod(other, 0o700)
    return other


def test_a_new_store_has_one_id_in_folder_and_catalog(store: Store) -> None:
    written = storeid.read_tree_id(store.root)
    assert written is not None and len(written) == 32
    assert catalog_id(store) == written


def test_a_folder_that_is_not_the_catalogs_is_refused(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_bytes(b"on the shared tree")
    store.put("docs", source)
    other = second_folder(store.root, tmp_path)
    if store.config.database_url is None:  # SQLite: the catalog travels with the folder
        shutil.copy2(store.root / "catalog.db", other / "catalog.db")
        (other / "catalog.db").chmod(0o600)
    store.close()

    def files() -> dict:  # the SQLite catalog's own files aside (its lock files appear on first use)
        return {path: what for path, what in file_tree(other).items() if not path.startswith("catalog.db")}

    before = files()
    for command in (["ls"], ["put", "docs", str(source)], ["fsck", "--repair"], ["gc"]):
        result = run_cli(other, *command, check=2)
        message = result.stderr.decode()
        assert message.count("\n") == 1 and "Traceback" not in message
        assert f"the store folder {other} has no store id" in message and "shared" in message
    assert files() == before


def test_the_shared_folder_under_another_path_is_accepted(store_root: Path, tmp_path: Path) -> None:
    """Each server may see the shared folder under its own path."""
    elsewhere = tmp_path / "mounted-here"
    elsewhere.symlink_to(store_root)
    source = tmp_path / "b.txt"
    source.write_bytes(b"from server b")
    object_id = run_cli(elsewhere, "put", "docs", str(source)).stdout.split()[0].decode()
    assert run_cli(store_root, "cat", object_id).stdout == b"from server b"


def test_a_store_of_another_id_is_refused(store: Store, tmp_path: Path) -> None:
    storeid.tree_file(store.root).write_text("0" * 32 + "\n")
    root = store.root
    store.close()
    message = run_cli(root, "ls", check=2).stderr.decode()
    assert f"belongs to store {'0' * 32}" in message and message.count("\n") == 1


def test_init_of_a_new_folder_on_a_catalog_in_use_is_refused(store: Store, tmp_path: Path) -> None:
    if store.config.database_url is None:
        pytest.skip("an SQLite catalog is made with its folder")
    other = tmp_path / "server-c"
    result = run_cli(other, "init", "--database-url", store.config.database_url, check=2)
    assert "belongs to store" in result.stderr.decode() and result.stderr.decode().count("\n") == 1
    assert not other.exists()


def test_a_store_from_before_ids_gets_one_on_first_open(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "c.txt"
    source.write_bytes(b"older store")
    store.put("docs", source)
    store.catalog.run(lambda tx: tx.execute("delete from store"))
    storeid.tree_file(store.root).unlink()
    root = store.root
    store.close()
    with Store.open(root) as opened:
        assert storeid.read_tree_id(root) == catalog_id(opened) is not None
        # a first opener interrupted between its two writes: the tree's id is adopted
        opened.catalog.run(lambda tx: tx.execute("delete from store"))
        written = storeid.read_tree_id(root)
    with Store.open(root) as opened:
        assert catalog_id(opened) == written


def test_an_empty_catalog_is_not_given_a_trees_id(store: Store, tmp_path: Path) -> None:
    """A folder with an id and blobs, met by an empty catalog, would see every file as an
    orphan: refused, pointing at `assetfs load`."""
    source = tmp_path / "a.bin"
    source.write_bytes(b"a blob the emptied catalog no longer knows")
    store.put("docs", source, name="a.bin")

    def empty(tx) -> None:
        for table in ("holds", "entries", "buckets", "nodes", "objects", "blobs", "store"):
            tx.execute(f"delete from {table}")

    store.catalog.run(empty)
    root = store.root
    store.close()
    message = run_cli(root, "gc", check=2).stderr.decode()
    assert "is empty" in message and "assetfs load" in message
