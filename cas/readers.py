"""Read-only mounts, seen by writers without writing anything (docs/concurrency.md,
"Superseded versions").

A read-only mount writes nothing (docs/upgrade.md), so it has no row in `mounts`. Yet a
writer must not free a superseded version at once while such a mount runs: the mount may
have the version open, or have shown its id to a user. So each read-only mount holds a
*reader lock* for as long as it runs, one a user or role that may only read can take:

- PostgreSQL: a session-level advisory lock, shared, on READERS_KEY, on a connection of its
  own (any role may take advisory locks). A writer sees it in `pg_locks`.
- SQLite (one machine): a shared flock on the store's folder, which a member of the store's
  group may open. A writer tries an exclusive flock without waiting, and drops it at once.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from cas.catalog import Catalog
from cas.catalog.flockwait import lock_until
from cas.errors import StoreError

READERS_KEY = 0x6173736574667372  # "assetfsr": no other assetfs advisory lock uses it
_HIGH, _LOW = READERS_KEY >> 32, READERS_KEY & 0xFFFFFFFF  # how pg_locks shows a bigint key
LOCK_TIMEOUT = 10.0  # seconds a starting reader waits for a writer's probe (microseconds) to pass


class ReaderLock:
    """A read-only mount's reader lock, held until `release`."""

    def __init__(self, release) -> None:
        self._release = release

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()


def hold(root: Path, catalog: Catalog) -> ReaderLock:
    """Take the reader lock of the store at `root` (a read-only mount, as it starts)."""
    if catalog.dialect == "postgres":
        import psycopg

        from cas.catalog.postgres import connect_options

        try:
            connection = psycopg.connect(catalog.url, **connect_options(catalog.url))
            connection.execute(f"set lock_timeout = {round(LOCK_TIMEOUT * 1000)}")
            connection.execute("select pg_advisory_lock_shared(%s)", (READERS_KEY,))
        except psycopg.Error as error:
            raise StoreError(f"cannot take the read-only mount's reader lock: {error}") from None
        return ReaderLock(connection.close)  # ending the session releases it
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    if not lock_until(fd, fcntl.LOCK_SH, time.monotonic() + LOCK_TIMEOUT):
        os.close(fd)
        raise StoreError(f"cannot take the read-only mount's reader lock on {root} (a writer holds it); try again")
    return ReaderLock(lambda: os.close(fd))


def present(root: Path, catalog: Catalog) -> bool:
    """Whether a read-only mount of the store runs now (holds its reader lock)."""
    if catalog.dialect == "postgres":
        return catalog.run(lambda tx: tx.one(
            "select 1 as found from pg_locks where locktype = 'advisory' and granted "
            "and database = (select oid from pg_database where datname = current_database()) "
            "and classid::bigint = :high and objid::bigint = :low and objsubid = 1", {"high": _HIGH, "low": _LOW}), write=False) \
            is not None
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # drops the probe's lock, if it had it
    return False
