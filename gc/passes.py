"""The collector's catalog passes: touched, expired, purge and blob sweep.

Every pass fixes its cutoff from the run's `now` before it scans, and re-checks each row at
the moment it changes it: the claim re-evaluates the row's condition under its row lock
(PostgreSQL; SQLite's write lock on SQLite), and whatever depends on the blob — a put that
deduplicates onto an object, or re-creates a blob — is re-checked under the blob lock.
"""

from casgc import failures
from casgc.batches import Context, Outcome, Scan, run_scan
from casgc.report import PassReport
from cas import names, sweeppause
from cas.model import iso_time
from cas.catalog import Transaction
from cas.catalog.base import Row
from cas.faults import crash_point
from cas.fsck import HASH_NAME
from cas.store import ZERO_ID, trash_object

_OBJECTS = (
    "select t.id, t.bucket, t.hash, t.size, t.{key}, " + failures.ATTEMPTS + " from objects t "
    + failures.join("cast(t.id as text)")
    + " where {condition} and " + failures.DUE
    + " and (t.{key}, t.id) > (:after_{key}, :after_id) order by t.{key}, t.id limit :limit{{lock}}"
)


def _object_scan(name: str, key: str, condition: str, handle, **params: float) -> Scan:
    return Scan(name=name, sql=_OBJECTS.format(key=key, condition=condition), keys=(key, "id"),
                start=(-1.0, ZERO_ID), item="id", handle=handle, params=params)


def touched(context: Context) -> PassReport:
    """Touched objects older than `min_age`: referenced → untouched; not → into the trash.

    The blob lock makes the decision safe against a put that deduplicates onto the object: a
    put holds that lock from its dedup lookup to its commit. The lock is only tried: a blob
    busy with a put is left for the next pass rather than making the put wait.
    """
    store, references = context.store, context.references

    def handle(tx: Transaction, row: Row) -> Outcome:
        references.check_bucket(tx, row["bucket"])
        if context.dry_run:
            return Outcome("kept" if references.referenced(tx, row) else "trashed")
        if not tx.try_lock_blob(row["hash"]):
            return Outcome("busy")
        if references.referenced(tx, row):
            tx.execute("update objects set touched_at = null where id = :id", {"id": row["id"]})
            return Outcome("kept")
        trash_object(tx, row["id"], context.now, store.config.bucket(row["bucket"]).grace)
        crash_point("gc:trashed")
        return Outcome("trashed")

    condition = "t.touched_at is not null and t.deleted_at is null and t.touched_at <= :cutoff"
    report = run_scan(context, _object_scan("touched", "touched_at", condition, handle,
                                            cutoff=context.now - store.config.gc.min_age))
    report.skipped_buckets = dict(references.broken)
    return report


def expired(context: Context) -> PassReport:
    """Live objects whose `expires_at` has passed go to the trash, referenced or not."""

    def handle(tx: Transaction, row: Row) -> Outcome:
        context.references.check_bucket(tx, row["bucket"])
        if not context.dry_run:
            trash_object(tx, row["id"], context.now, context.store.config.bucket(row["bucket"]).grace)
            crash_point("gc:trashed")
        return Outcome("trashed")

    condition = "t.expires_at is not null and t.deleted_at is null and t.expires_at <= :now"
    return run_scan(context, _object_scan("expired", "expires_at", condition, handle))


def purge(context: Context, deleted_before: float | None = None) -> PassReport:
    """Trashed objects past `purge_after` (or, for `trash purge`, deleted before
    `deleted_before`): the row, its names and holds go in one commit, then the alias."""
    tree = context.store.tree

    def handle(tx: Transaction, row: Row) -> Outcome:
        context.references.check_bucket(tx, row["bucket"])  # the alias path is built from it
        if context.dry_run:
            return Outcome("purged")
        names.unbind_object(tx, row["id"])
        tx.execute("delete from holds where object_id = :id", {"id": row["id"]})
        failures.clear(tx, row["id"])
        tx.execute("delete from objects where id = :id", {"id": row["id"]})
        crash_point("gc:purged")

        def remove_alias() -> None:
            crash_point("gc:purge-committed")
            tree.remove_alias(row["bucket"], row["id"])

        return Outcome("purged", after_commit=remove_alias)

    if deleted_before is None:
        scan = _object_scan("purge", "purge_after", "t.deleted_at is not null and t.purge_after <= :now", handle)
    else:
        scan = _object_scan("purge", "deleted_at", "t.deleted_at is not null and t.deleted_at <= :cutoff", handle,
                            cutoff=deleted_before)
    return run_scan(context, scan)


def sweep(context: Context) -> PassReport:
    """Blobs no object uses: under the blob lock (docs/design.md invariant 2), re-check that no
    object appeared, delete the row and unlink the file, then commit.

    A put of the same content either committed its object first (the re-check sees it) or
    waits for the lock and then finds no row and no file, and installs both again.
    """
    tree = context.store.tree

    def handle(tx: Transaction, row: Row) -> Outcome:
        if not HASH_NAME.fullmatch(row["hash"]):
            raise ValueError(f"not a blob hash: {row['hash']!r}")
        if context.dry_run:
            return Outcome("swept", bytes_freed=row["size"])
        if not tx.try_lock_blob(row["hash"]):
            return Outcome("busy")
        # the pause is read in the statement that sees the objects gone (cas/sweeppause.py)
        deleted = tx.one("delete from blobs where hash = :hash and not exists "
                         "(select 1 from objects where hash = :hash) and " + sweeppause.NOT_PAUSED
                         + " returning hash", {"hash": row["hash"], "now": context.now})
        if deleted is None:
            return Outcome("paused" if sweeppause.active(tx, context.now) else "in_use")
        size = tree.blob_size(row["hash"]) or 0
        tree.remove_blob(row["hash"])
        crash_point("gc:swept")
        return Outcome("swept", bytes_freed=size)

    paused_until = context.store.catalog.run(lambda tx: sweeppause.active(tx, context.now), write=False)
    if paused_until is not None:  # a backup copies the blob tree: nothing is unlinked (cas/sweeppause.py)
        report = PassReport("sweep")
        report.note = f"paused by a backup's dump until {iso_time(paused_until)}"
        return report
    sql = (
        "select t.hash, t.size, " + failures.ATTEMPTS + " from blobs t " + failures.join("t.hash")
        + " where not exists (select 1 from objects o where o.hash = t.hash) and " + failures.DUE
        + " and t.hash > :after_hash order by t.hash limit :limit{lock}"
    )
    return run_scan(context, Scan(name="sweep", sql=sql, keys=("hash",), start=("",), item="hash", handle=handle))
