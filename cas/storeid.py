"""The store's id: one random id written in the store's folder, beside its blob tree
(`<store>/store-id`), and in the catalog (`store`, migration 11). A server whose folder is
not the one its catalog knows refuses to run: several servers on one PostgreSQL catalog must share one blob tree (a
shared filesystem), and one that writes blobs into a folder of its own would leave objects
that the others cannot read and files that their collectors take for orphans.

The id is written tree first, catalog second, each only where it is missing:

- a new store (`assetfs init`) gets a new id in both;
- a store made before migration 11 gets one from its first opener: the tree's file is
  created exclusively (a shared tree has one file, whoever wrote it), then the catalog row
  is inserted unless one appeared meanwhile; both are read again and must agree;
- a catalog with an id and a tree without one is another tree: refused;
- a tree with an id and a catalog without one: the catalog adopts it when it has data (a
  first opener interrupted between its two writes) or the tree holds no blobs; an empty
  catalog beside blobs is refused, since every file of the tree would be an orphan to it:
  `assetfs load` fills it first (cas/dump.py gives it the id of the store it loads).
"""

import os
import time
from pathlib import Path

from cas import privacy
from cas.blobtree import fsync_path
from cas.catalog import Catalog, Transaction
from cas.errors import BadInput

TREE_FILE = "store-id"
ID_LENGTH = 32  # hex digits


class WrongStore(BadInput):
    """This server's blob tree and its catalog belong to different stores; nothing was changed."""


def tree_file(root: Path) -> Path:
    return root / TREE_FILE


def read_tree_id(root: Path) -> str | None:
    """The id written in the blob tree, or None when there is none."""
    path = tree_file(root)
    try:
        text = path.read_bytes().decode("ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as error:  # a folder, unreadable
        raise WrongStore(f"{path} cannot be read ({error.strerror}); restore it from a backup of the store") from None
    if len(text) != ID_LENGTH or any(char not in "0123456789abcdef" for char in text):
        raise WrongStore(f"{path} is damaged (not a store id: {text[:40]!r}); restore it from a backup of the store")
    return text


def catalog_id(tx: Transaction) -> str | None:
    return tx.value("select id from store")


def catalog_is_empty(tx: Transaction) -> bool:
    return all(tx.one(f"select 1 as found from {table} limit 1") is None for table in ("objects", "blobs", "buckets"))


def _staged_id(root: Path, store_id: str) -> Path:
    """A durable file holding `store_id` under a staging name in tmp/, to be put in place whole
    (never seen half-written)."""
    staging = root / "tmp" / f"stage-store-id-{os.urandom(4).hex()}"
    privacy.create_file(staging, privacy.file_mode(root), f"{store_id}\n".encode())
    fsync_path(staging)
    return staging


def _write_tree_id(root: Path, store_id: str) -> None:
    """Create `<store>/store-id` with `store_id` unless a file is there already (then it
    stays): linked into place from its staging name."""
    staging = _staged_id(root, store_id)
    try:
        try:
            os.link(staging, tree_file(root))
        except FileExistsError:
            return
        fsync_path(root)
    finally:
        staging.unlink(missing_ok=True)


def _insert_catalog_id(catalog: Catalog, store_id: str) -> None:
    catalog.run(lambda tx: tx.execute(
        "insert into store (id, created_at) select :id, :now where not exists (select 1 from store)",
        {"id": store_id, "now": time.time()}))


def _mismatch(root: Path, tree: str | None, catalog: Catalog, known: str) -> WrongStore:
    where = f"store folder {root}"
    if tree is None:
        return WrongStore(
            f"the {where} has no store id, but the catalog {catalog.describe()} belongs to store {known}: this "
            f"folder is not that store's blob tree (several servers must share one, on a shared filesystem: "
            f"mount it at {root}); nothing was changed")
    return WrongStore(
        f"the {where} belongs to store {tree}, the catalog {catalog.describe()} to store {known}: "
        f"database_url names another store's catalog, or this folder is not the blob tree the catalog's "
        f"servers share; nothing was changed")


def check(root: Path, catalog: Catalog, write: bool = True) -> str | None:
    """The store's id, once the blob tree at `root` and the catalog agree on it (missing
    halves are written as the module says); WrongStore when they belong to different stores.
    Without `write` (a read command) nothing is written: a store whose id is not written yet
    (`assetfs migrate` writes it) is read as it is, and None is returned."""
    tree = read_tree_id(root)
    known, empty = catalog.run(lambda tx: (catalog_id(tx), catalog_is_empty(tx)), write=False)
    if known is not None:
        if tree != known:
            raise _mismatch(root, tree, catalog, known)
        return known
    if not write:
        return tree
    if tree is not None and empty and _holds_blobs(root):
        raise WrongStore(
            f"the catalog {catalog.describe()} is empty, but the store folder {root} belongs to store "
            f"{tree}: load the store's catalog into it with 'assetfs load' (docs/backup.md), or set "
            f"database_url to the store's catalog; nothing was changed")
    if tree is None:
        _write_tree_id(root, os.urandom(ID_LENGTH // 2).hex())  # what secrets.token_hex gives
        tree = read_tree_id(root)
    _insert_catalog_id(catalog, tree)
    known = catalog.run(catalog_id, write=False)
    if known != tree:
        raise _mismatch(root, tree, catalog, known)
    return known


def _holds_blobs(root: Path) -> bool:
    """Whether the blob tree holds anything a new, empty catalog would take for orphans."""
    return any(os.scandir(root / "blobs"))


def catalog_belongs_elsewhere(catalog: Catalog) -> str | None:
    """The id of the store a catalog belongs to already, if any (`assetfs init` of a new folder
    on such a catalog is refused: that server must use the store's shared folder)."""
    return catalog.run(catalog_id, write=False)


def check_loadable(root: Path, store_id: str) -> None:
    """`assetfs load` of store `store_id` into the folder at `root`: refused when its blob tree
    holds another store's blobs, since the loaded catalog would take each for an orphan."""
    tree = read_tree_id(root)
    blobs = root / "blobs"
    if tree != store_id and any(os.scandir(blobs)):
        raise WrongStore(
            f"the blob tree {blobs} holds blobs of store {tree or '(no id)'}, the dump is of store {store_id}: "
            f"load it into a store whose blob tree is that store's copy, or into a new one; nothing was changed")


def give_loaded_id(root: Path, tx: Transaction, store_id: str) -> None:
    """`assetfs load`, at its end: the catalog (in `tx`) and the folder at `root` take the id
    of the store loaded (`check_loadable` said they may)."""
    if read_tree_id(root) != store_id:
        os.replace(_staged_id(root, store_id), tree_file(root))
        fsync_path(root)
    tx.execute("delete from store")
    tx.execute("insert into store (id, created_at) values (:id, :now)", {"id": store_id, "now": time.time()})
