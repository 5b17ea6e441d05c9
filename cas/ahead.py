"""Files before the transaction, for the mount's write-behind: the blobs and aliases of a
batch are made, and their folders flushed, before the write transaction that commits its
rows (docs/concurrency.md, "Write-behind").

That transaction then finds them in place and holds the write lock (on SQLite, the whole
catalog's) for SQL, not for fsyncs. A blob file is still created only under its blob lock
(docs/design.md invariant 2), in a short transaction of its own that writes no row; the staged
copy is linked, not moved, so that should a collector remove the blob before the commit
(its hash has no row yet, or a row no object uses), the commit installs it again, under the
lock, from the staged copy. An alias that no row ends up explaining (a failed transaction, an
object deduplicated after all) is removed after the commit; what a crash leaves are orphans
for the collector and fsck.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from cas.blobtree import BlobTree, KnownContent, StagedFile
from cas.catalog import Catalog, Transaction


@dataclass(frozen=True)
class PlannedObject:
    """An object a put means to create: its content, and where its alias goes."""

    content: StagedFile | KnownContent
    bucket: str
    object_id: str
    filename: str


def make_files(catalog: Catalog, tree: BlobTree, planned: Iterable[PlannedObject]) -> None:
    """Link each new content's blob (under its lock, in a background write like the batch's
    commit) and each object's alias, then flush their folders."""
    planned = list(planned)
    pending = tree.pending_sync()
    new = {item.content.hash: item.content for item in planned
           if isinstance(item.content, StagedFile) and tree.blob_size(item.content.hash) is None}

    def link_blobs(tx: Transaction) -> None:
        for hash_hex in sorted(new):  # blob locks in hash order
            tx.lock_blob(hash_hex)
            tree.link_blob(new[hash_hex], pending)

    if new:
        catalog.run(link_blobs, background=True)
    for item in planned:
        tree.make_alias(item.content.hash, item.bucket, item.object_id, item.filename, pending, blob_missing_ok=True)
    pending.flush()


def remove_unused(tree: BlobTree, planned: Iterable[PlannedObject], committed: set[str]) -> None:
    """Remove the aliases of planned objects that were not committed."""
    for item in planned:
        if item.object_id not in committed:
            tree.remove_alias(item.bucket, item.object_id)
