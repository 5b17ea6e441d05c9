"""Sweep pauses: while one is active the collector unlinks no blob (docs/backup.md).

A backup dumps the catalog first and copies the blob tree after it. Every blob the dump
refers to must still be there when the copy reaches it, yet the store keeps running: the
purge pass may remove an object of the dump meanwhile, and the sweep that follows would
unlink its blob. `assetfs dump` therefore records a pause (migration 11, `sweep_pauses`)
*before* it takes its snapshot; the sweep pass, and `trash purge`'s sweep, unlink nothing
while a pause has not ended. Only the unlinking of blobs waits: objects are still trashed
and purged (the restore's `fsck --repair` gives a purged object of the dump its alias back
from its blob).

The pause is checked in the same statement that deletes the blob's row, so a sweep whose
statement saw an object of the dump purged (a purge committed after the dump's snapshot,
itself after the pause) also sees the pause.
"""

import secrets
import time
from dataclasses import dataclass

from cas.catalog import Catalog, Transaction
from cas.errors import NotFound, StoreError

NOT_PAUSED = "not exists (select 1 from sweep_pauses where ends_at > :now)"


@dataclass(frozen=True)
class Pause:
    id: str
    started_at: float
    ends_at: float


class PauseEnded(StoreError):
    """The pause ended (its time ran out) before the backup said it was done: blobs may have
    been unlinked before the copy reached them."""


def start(catalog: Catalog, duration: float, now: float | None = None) -> Pause:
    """Record a pause of `duration` seconds from now (pauses that ended are deleted)."""
    now = time.time() if now is None else now
    pause = Pause(secrets.token_hex(8), now, now + duration)

    def record(tx: Transaction) -> None:
        tx.execute("delete from sweep_pauses where ends_at <= :now", {"now": now})
        tx.execute("insert into sweep_pauses (id, started_at, ends_at) values (:id, :started_at, :ends_at)",
                   {"id": pause.id, "started_at": pause.started_at, "ends_at": pause.ends_at})

    catalog.run(record)
    return pause


def end(catalog: Catalog, pause_id: str, now: float | None = None) -> Pause:
    """End a pause; PauseEnded when its time had run out already, NotFound when there is none."""
    now = time.time() if now is None else now

    def remove(tx: Transaction) -> Pause | None:
        row = tx.one("select id, started_at, ends_at from sweep_pauses where id = :id", {"id": pause_id})
        tx.execute("delete from sweep_pauses where id = :id", {"id": pause_id})
        return None if row is None else Pause(row["id"], row["started_at"], row["ends_at"])

    pause = catalog.run(remove)
    if pause is None:
        raise NotFound(f"no sweep pause {pause_id!r} (ended already, or never taken)")
    if pause.ends_at <= now:
        raise PauseEnded(f"sweep pause {pause_id} ran out before this: blobs unlinked since then may be missing "
                         f"from the copy; take the backup again with a longer --pause-sweep")
    return pause


def active(tx: Transaction, now: float) -> float | None:
    """When the last active pause ends, or None when none is active."""
    return tx.value("select max(ends_at) as ends_at from sweep_pauses where ends_at > :now", {"now": now})
