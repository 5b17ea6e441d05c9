"""The loop every catalog pass shares: claim a batch, handle each row, commit; repeat.

Each batch is one short transaction (docs/concurrency.md, "The garbage collector"). On
PostgreSQL the batch's rows are claimed with `FOR UPDATE SKIP LOCKED`, so several workers
share a pass without waiting for each other; on SQLite the write lock serializes them.
Batches follow a key order (keyset pagination), so every row is seen once per pass even
when it is left as it was (skipped, failed, or in a dry run).

Each row is handled inside a savepoint: a row that fails is rolled back alone, recorded in
`gc_failures` (retried later with backoff) and counted; the pass goes on.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from casgc import failures
from cas.catalog.base import first_line
from casgc.references import BucketSkipped, References
from casgc.report import PassReport
from cas.catalog import Transaction
from cas.catalog.base import Row
from cas.store import Store

log = logging.getLogger("assetfs.gc")

# On SQLite, how long a batch keeps the write lock before it ends early for a waiting writer
# (docs/concurrency.md, "Waiting for the write lock"): what the collector gets at a time
# beside a steady stream of puts, and about what it adds to their wait
YIELD_AFTER = 0.001
Progress = Callable[[str, int], None]  # (pass name, rows examined so far)


@dataclass
class Context:
    """One collector run: its store, its fixed `now`, and how it is watched and stopped."""

    store: Store
    now: float
    references: References
    dry_run: bool = False
    stop: threading.Event | None = None
    progress: Progress | None = None

    @property
    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()


@dataclass
class Outcome:
    """What happened to one row; `after_commit` removes files once the change is committed."""

    action: str
    bytes_freed: int = 0
    after_commit: Callable[[], None] | None = None
    message: str | None = None  # for action "error"


@dataclass
class Scan:
    """A pass over the rows `sql` selects.

    `sql` selects from a table aliased `t`, joined with `failures.join(...)`, keeps only rows
    `failures.DUE`, continues after `(:after_<key>, …)` in `keys` order, ends with
    `limit :limit{lock}` and returns `failures.ATTEMPTS`.
    """

    name: str
    sql: str
    keys: tuple[str, ...]
    start: tuple[Any, ...]
    item: str  # the column that names a row in gc_failures
    handle: Callable[[Transaction, Row], Outcome]
    params: dict[str, Any] = field(default_factory=dict)


def run_scan(context: Context, scan: Scan) -> PassReport:
    catalog = context.store.catalog
    report = PassReport(scan.name)
    report.deferred = catalog.run(lambda tx: failures.deferred(tx, scan.name, context.now), write=False)
    lock = " for update of t skip locked" if catalog.dialect == "postgres" and not context.dry_run else ""
    sql = scan.sql.format(lock=lock)
    size = context.store.config.gc.batch_size
    limit, after = size, scan.start
    while not context.stopped:
        params = {**scan.params, "pass": scan.name, "now": context.now, "limit": limit,
                  **{f"after_{key}": value for key, value in zip(scan.keys, after)}}
        try:
            rows, outcomes = catalog.run(lambda tx: _batch(context, scan, tx, sql, params), write=not context.dry_run,
                                         background=True)
        except Exception as error:  # the database is gone, or a statement outside any row failed
            log.exception("gc %s: a batch failed; the pass ends here", scan.name)
            report.error(f"a batch failed, the pass ended early: {first_line(error)}")
            return report
        _tally(report, outcomes)
        if context.progress:
            context.progress(scan.name, report.examined)
        handled = len(outcomes)
        if handled == len(rows) < limit:
            break
        after = tuple(rows[handled - 1][key] for key in scan.keys)
        # a batch cut short for a waiting writer: the next claims about what fits between two writers
        limit = min(size, 2 * (handled if handled < len(rows) else limit))
    return report


def _batch(context: Context, scan: Scan, tx: Transaction, sql: str, params: dict[str, Any]) -> tuple[list[Row], list[Outcome]]:
    """The rows claimed and the outcomes of those handled: all of them, unless another writer
    waits for the write lock (SQLite), which gets it once the rows handled so far commit."""
    began = time.monotonic()
    rows = tx.all(sql, params)
    outcomes = []
    for row in rows:
        outcomes.append(_handle_row(context, scan, tx, row))
        if time.monotonic() - began >= YIELD_AFTER and tx.writers_waiting():
            break
    return rows, outcomes


def _handle_row(context: Context, scan: Scan, tx: Transaction, row: Row) -> Outcome:
    item = str(row[scan.item])
    tx.execute("savepoint gc_row")
    try:
        outcome = scan.handle(tx, row)
    except BucketSkipped:
        tx.execute("rollback to savepoint gc_row")
        outcome = Outcome("skipped")
    except Exception as error:
        if context.store.catalog.is_retryable(error):
            raise  # the whole batch runs again
        tx.execute("rollback to savepoint gc_row")
        message = f"{item}: {first_line(error)}"
        if not context.dry_run:
            failures.record(tx, scan.name, item, row["failed_attempts"], message, context.now)
        outcome = Outcome("error", message=message)
    else:
        if row["failed_attempts"] and not context.dry_run:
            failures.clear(tx, item, scan.name)
    tx.execute("release savepoint gc_row")
    return outcome


def _tally(report: PassReport, outcomes: list[Outcome]) -> None:
    """Count a committed batch, and remove the files its changes freed."""
    for outcome in outcomes:
        report.examined += 1
        if outcome.action == "error":
            log.warning("gc %s: %s (retried later)", report.name, outcome.message)
            report.error(outcome.message or "")
            continue
        report.counts[outcome.action] += 1
        report.bytes_freed += outcome.bytes_freed
        if outcome.after_commit is not None:
            try:
                outcome.after_commit()
            except OSError as error:  # the row is gone: what is left is an orphan for a later pass
                log.warning("gc %s: %s", report.name, error)
                report.error(f"removing files after the commit failed: {error}")
