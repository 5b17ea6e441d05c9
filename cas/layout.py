"""The alias layout and its migration (docs/design.md, "Alias layout").

Layout 1 kept an object's alias at `objects/<bucket>/<id[0:2]>/<id>/`: for time-ordered
UUIDv7 ids that is `01` for decades, one folder for every alias of a bucket. Layout 2 shards
by the id's last four hex digits, two levels like the blob tree (`BlobTree.alias_dir`).

The migration moves each alias folder of layout 1 with one rename, so a kill (-9) at any
instant leaves every alias whole at one place or the other, and a run started again carries
on. It runs while the store is in use: puts make aliases at the new place only; changing or
removing an alias looks at both places, the old one first (the migration only moves from
old to new); fsck reports aliases at the old place and `--repair` moves them the same way.
Once a run found none left, the catalog records version 2 (`store_layout`, migration 12).
An assetfs older than migration 12 refuses the catalog, so none can put an alias at the old
place after that; a process of it that was running already must be stopped first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cas.blobtree import BlobTree
from cas.catalog import Transaction
from cas.ids import is_canonical_id
from cas.store import Store

ALIASES = "aliases"
CURRENT = 2  # the alias layout this assetfs writes
BATCH = 1000  # moves flushed to disk together


@dataclass
class LayoutResult:
    before: int  # the alias layout version the catalog recorded
    moved: int = 0  # alias folders moved to their place in layout 2

    def describe(self, dry_run: bool) -> str:
        if dry_run:
            return f"alias layout {self.before}: {self.moved} aliases to move to layout {CURRENT}"
        if self.before == CURRENT and not self.moved:
            return f"alias layout {CURRENT}: up to date"
        return f"alias layout {self.before} → {CURRENT}: moved {self.moved} aliases"


def recorded_version(tx: Transaction) -> int:
    """The alias layout version the catalog records."""
    return tx.value("select version from store_layout where part = :part", {"part": ALIASES}) or 1


def old_aliases(tree: BlobTree) -> Iterator[tuple[str, str]]:
    """(bucket, id) of each alias folder at its layout-1 place. Those sit right in the first
    level below a bucket (`objects/<bucket>/01/<id>`); the first level of layout 2 holds only
    two-digit folders, so only that level is read, not the 65,536 folders below it."""
    for bucket in _folders(tree.objects):
        for shard in _folders(bucket):
            for entry in _folders(shard):
                if is_canonical_id(entry.name) and entry.name[0:2] == shard.name:
                    yield bucket.name, entry.name


def _folders(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as entries:
            return sorted(Path(entry.path) for entry in entries if entry.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def migrate_aliases(store: Store, dry_run: bool = False) -> LayoutResult:
    """Move every alias of layout 1 to its layout-2 place, then record version 2. With
    `dry_run`, only count them. Safe to run while the store is in use, and again after a kill."""
    result = LayoutResult(before=store.catalog.run(recorded_version, write=False))
    pending = store.tree.pending_sync()
    for bucket, object_id in old_aliases(store.tree):
        if dry_run:
            result.moved += 1
            continue
        if store.tree.move_old_alias(bucket, object_id, pending):
            result.moved += 1
            if result.moved % BATCH == 0:
                pending.flush()
    if dry_run:
        return result
    pending.flush()
    if result.before != CURRENT:
        store.catalog.run(_record_current, write=True)
    return result


def _record_current(tx: Transaction) -> None:
    tx.execute("update store_layout set version = :version where part = :part", {"version": CURRENT, "part": ALIASES})
