"""The reference check of objects that just lost their last name, run at once.

Removing or replacing the last name of an object (rm in the mount, an overwrite, `put --name`
onto it) touches the object; the collector's touched pass would look at it only after
`min_age` (an hour), and until then it is neither reachable by name nor in the trash. The
views that remove names (the mount, the CLI) run this check for such objects within seconds
(docs/concurrency.md, "A name let go"): nothing refers to it → into the trash, restorable
with the name it had; a hold or a rule still does → it stays live (and touched, for the
collector). `min_age` is for objects that never had a name: an application may reference
them a little after the put.

Such an object is marked (`touched_at` = `names.LET_GO`, the epoch), so that a check a view
could not run (it was killed first) is run by the next mount (`let_go_waiting`) or collector
pass (the epoch is older than any `min_age` cutoff). The decision is the touched pass's, made
the same way: the row locked first, then the blob
lock only tried (a put holding it may be deduplicating onto the object), rules run as the
collector runs them.
"""

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from casgc.references import BucketSkipped, References, UnknownBucket
from cas.catalog import Transaction
from cas.names import LET_GO
from cas.store import Store, trash_object

log = logging.getLogger("assetfs.gc")


@dataclass
class RecheckReport:
    trashed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # referenced, gone already, or its bucket skipped
    busy: list[str] = field(default_factory=list)  # its blob was locked by a put: try again later


def let_go_waiting(store: Store) -> list[str]:
    """Objects that lost their last name and were not checked yet (their view ended first)."""
    rows = store.catalog.run(lambda tx: tx.all(
        "select id from objects where touched_at = :let_go and deleted_at is null", {"let_go": LET_GO}), write=False)
    return [row["id"] for row in rows]


def recheck(store: Store, object_ids: Iterable[str]) -> RecheckReport:
    """Check each object now: trash it when nothing refers to it."""
    references = References.load(store.catalog, store.config)
    report = RecheckReport()
    for object_id in sorted(set(object_ids)):
        outcome = store.catalog.run(lambda tx: _check(tx, store, references, object_id))
        getattr(report, outcome).append(object_id)
    if report.trashed:
        log.info("moved %d objects that lost their last name to the trash", len(report.trashed))
    return report


def _check(tx: Transaction, store: Store, references: References, object_id: str) -> str:
    row = tx.one("update objects set touched_at = touched_at where id = :id and deleted_at is null "
                 "returning id, bucket, hash", {"id": object_id})
    if row is None:
        return "kept"  # trashed or purged meanwhile
    try:
        references.check_bucket(tx, row["bucket"])
        if not tx.try_lock_blob(row["hash"]):
            return "busy"
        if references.referenced(tx, row):  # touched as any other, for the collector after min_age
            tx.execute("update objects set touched_at = :now where id = :id", {"now": time.time(), "id": object_id})
            return "kept"
    except (BucketSkipped, UnknownBucket):
        return "kept"  # the collector reports these (and checks it again on its next pass)
    trash_object(tx, object_id, time.time(), store.config.bucket(row["bucket"]).grace)
    return "trashed"
