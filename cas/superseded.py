"""A writer's own superseded versions are freed at once instead of trashed.

A program that fsyncs a file a thousand times makes the mount commit a thousand versions of
it; each replaced one would sit in the trash for the bucket's `grace` (a week). A version
that the same writer (one mount: its versions are `<mount id>.<seq>`) replaces within the
bucket's `free_superseded` window (default 1 min; "0s" turns it off) is removed in the commit
that replaces it, row and names, and its alias and blob right after that commit. Only when
nothing else can need it (docs/concurrency.md, "Superseded versions"):

- the writer made that object itself (the mount remembers which of its commits created a new
  object, `StagedWrite.supersedes`: never one it deduplicated onto) and the node still refers
  to it at the writer's own version;
- it was created less than `free_superseded` ago and not touched since (a put that
  deduplicates onto an object touches it: its caller holds the id; so does a mount that shows
  its id to a user, in `user.assetfs.id` or a `.by-id` listing: `Store.keep_handed_out`);
- no other name, no hold, no bucket rules (the bucket has none: rules may see ids this code
  cannot), and no other mount is running, read-only ones included (another mount's open
  handle could still read it, and it may have shown the id; handles in the writer's own mount
  read its newer staged copy or an open fd; cas/readers.py);
- its blob lock is free (a put deduplicating onto it waits for nothing and is not raced).

Anything else goes to the trash as before (`names._let_go`, docs/concurrency.md, "A name let go").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cas.blobtree import BlobTree
from cas.catalog import Catalog, Transaction
from cas.catalog.base import Row
from cas.config import Config
from cas.model import ObjectInfo

log = logging.getLogger("assetfs.store")


@dataclass(frozen=True)
class Freed:
    """An object removed from the catalog in a commit; its alias and blob go after it."""

    bucket: str
    object_id: str
    hash: str


def writer_of(version: str | None) -> str | None:
    """The writer of a content version `<writer>.<seq>` (a mount's id); None for others."""
    if version is None or "." not in version:
        return None
    return version.rpartition(".")[0]


def own_version(tx: Transaction, config: Config, node: Row, version: str, supersedes: str | None,
                now: float) -> Row | None:
    """In the commit's transaction, before the node (its row `node`) moves to the content of
    `version`: its object, when it is the writer's own recent version that nothing else
    needs (module docstring), with its blob lock taken; None when it is to be let go as usual."""
    old = node["object_id"]
    if supersedes is None or old != supersedes:
        return None
    writer = writer_of(version)
    if writer is None or writer_of(node["version"]) != writer:
        return None
    settings = config.bucket(node["bucket"])
    if settings.free_superseded <= 0 or settings.rules:
        return None
    # locked (an update, as `store._lock_live`): a hold or delete of it waits for this commit
    row = tx.one("update objects set touched_at = touched_at where id = :id and deleted_at is null "
                 "and bucket = :bucket returning id, bucket, hash, created_at, touched_at",
                 {"id": old, "bucket": node["bucket"]})
    if row is None or row["created_at"] < now - settings.free_superseded or row["touched_at"] != row["created_at"]:
        return None  # old, or touched since its commit: a put deduplicated onto it, a hold was dropped, …
    if tx.one("select 1 as found from holds where object_id = :id "
              "union all select 1 as found from mounts where id <> :writer", {"id": old, "writer": writer}) is not None:
        return None
    if not tx.try_lock_blob(row["hash"]):  # a put deduplicating onto it holds it
        return None
    return row


def may_be_freed(config: Config, info: ObjectInfo, now: float) -> bool:
    """Whether a commit could still free `info` at once (`own_version`'s checks that need no
    transaction): created within its bucket's window and untouched since. A view touches such
    an object before it hands its id to a user (`Store.keep_handed_out`)."""
    window = config.bucket(info.bucket).free_superseded
    return window > 0 and info.touched_at == info.created_at and info.created_at >= now - window


def free(tx: Transaction, row: Row) -> Freed | None:
    """After `names.rebind_node` moved the node off `row` (from `own_version`), in the same
    transaction: remove the object unless another node refers to it now."""
    if tx.one("select 1 as found from nodes where object_id = :id limit 1", {"id": row["id"]}) is not None:
        return None
    tx.execute("delete from gc_failures where item = :id", {"id": row["id"]})
    tx.execute("delete from objects where id = :id", {"id": row["id"]})
    tx.released().discard(row["id"])
    return Freed(row["bucket"], row["id"], row["hash"])


def release(catalog: Catalog, tree: BlobTree, freed: list[Freed]) -> None:
    """After the commit that removed `freed`: their aliases, then each blob no object uses any
    more, under its blob lock (as the collector's sweep; a busy or failing one is left to the
    sweep, as is all of it after a crash)."""
    for one in freed:
        try:
            tree.remove_alias(one.bucket, one.object_id)
        except OSError as error:  # an orphan alias: the collector's orphans pass removes it
            log.warning("could not remove the alias of %s: %s", one.object_id, error)
    hashes = sorted({one.hash for one in freed})

    def sweep(tx: Transaction) -> None:
        for hash_hex in hashes:
            if not tx.try_lock_blob(hash_hex):
                continue
            if tx.one("delete from blobs where hash = :hash and not exists "
                      "(select 1 from objects where hash = :hash) returning hash", {"hash": hash_hex}) is not None:
                tree.remove_blob(hash_hex)

    try:
        if hashes:
            catalog.run(sweep, background=True)
    except Exception as error:  # the commit stands; the collector's sweep frees what is left
        log.warning("could not free the blobs of %d superseded versions yet: %s", len(hashes), error)
