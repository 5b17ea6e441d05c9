"""The embedded catalog: a SQLite database in the store (WAL, synchronous=FULL, or NORMAL
for a transaction that need not be durable at once).

One connection per thread. Write transactions start with BEGIN IMMEDIATE, which takes the
database's write lock at once: that lock is the blob lock (docs/concurrency.md), so any two
write transactions, in this process or another, never interleave. Before it, they queue for
their turn (`WriteQueue`) rather than in SQLite's sleeping busy handler.
"""

import errno
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from cas.catalog.base import Catalog, Row, RuleError, Transaction, WouldWait, first_line
from cas.catalog.writequeue import DEFAULT_TIMEOUT, Turn, WriteQueue
from cas.errors import StoreError

PROGRESS_STEPS = 1000  # virtual-machine steps between two looks at a guarded query's deadline
READ_NOW_STEPS = 10_000  # virtual-machine steps a read_now may take (a lookup by primary key takes ~100)
CHECKPOINT_ROWS = 1000  # rows a background connection changes between two of its checkpoints
TYPES = {"uuid": "text", "serial_pk": "integer primary key autoincrement", "float": "real"}


class SqliteTransaction(Transaction):
    def __init__(self, connection: sqlite3.Connection, turn: Turn | None, read_only: bool = False) -> None:
        self.connection = connection
        self.read_only = read_only  # the catalog's: its connections stay query_only
        self._turn = turn  # a write transaction's place in the write queue

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.connection.execute(sql, params or {})

    def one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        return self.connection.execute(sql, params or {}).fetchone()

    def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return self.connection.execute(sql, params or {}).fetchall()

    def guarded_one(self, sql: str, params: Mapping[str, Any], timeout: float) -> Row | None:
        # query_only refuses any write; the progress handler, called every PROGRESS_STEPS
        # virtual-machine steps, interrupts the query once the deadline has passed.
        connection = self.connection
        deadline = time.monotonic() + timeout
        connection.execute("savepoint assetfs_guarded")
        connection.execute("pragma query_only = on")
        connection.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_STEPS)
        try:
            cursor = connection.execute(sql, params)
            row = cursor.fetchone()
            cursor.close()
        except sqlite3.Error as error:
            timed_out = _code(error) == sqlite3.SQLITE_INTERRUPT
            raise RuleError(first_line(error), timed_out=timed_out) from None
        finally:
            connection.set_progress_handler(None, 0)
            connection.execute(f"pragma query_only = {'on' if self.read_only else 'off'}")
            connection.execute("rollback to savepoint assetfs_guarded")
            connection.execute("release savepoint assetfs_guarded")
        return row

    def lock_blob(self, hash_hex: str) -> None:
        if not self.connection.in_transaction:
            raise RuntimeError("the blob lock needs a write transaction")

    def try_lock_blob(self, hash_hex: str) -> bool:
        self.lock_blob(hash_hex)  # the write lock this transaction holds is every blob's lock
        return True

    def writers_waiting(self) -> bool:
        return self._turn is not None and self._turn.others_waiting()

    def has_table(self, name: str) -> bool:
        return self.connection.execute("select 1 from main.sqlite_master where type = 'table' and name = ?",
                                       (name,)).fetchone() is not None


LOCKED = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)  # another connection's lock was in the way


def _code(error: sqlite3.Error) -> int:
    """The primary result code of an SQLite error (its extended code's low byte)."""
    return getattr(error, "sqlite_errorcode", 0) & 0xFF


def _dict_row(cursor: sqlite3.Cursor, row: tuple) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, row)}


def _uri(path: Path, read_only: bool, immutable: bool = False) -> str:
    query = "?mode=ro" + ("&immutable=1" if immutable else "") if read_only else ""
    return path.absolute().as_uri() + query


class _StepBound:
    """read_now's progress handler: stops a statement after about `READ_NOW_STEPS` steps.

    SQLite calls it every `PROGRESS_STEPS` steps counted over a statement's whole life, and
    the statement cache reuses a statement (its count growing) across calls: a handler that
    stopped at its first call stopped one short lookup in about a hundred. So it counts its
    calls since `calls` was reset at the start of the statement: more than `READ_NOW_STEPS //
    PROGRESS_STEPS` of them mean more than `READ_NOW_STEPS` steps of this statement."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls > READ_NOW_STEPS // PROGRESS_STEPS


class SqliteCatalog(Catalog):
    """`read_only` (the read commands: docs/upgrade.md): no transaction may write, no lock
    file is made, and a user who may only read the store's files can use it (`_open`).
    `attach`: application databases attached read-only under their names, for bucket rules
    (`app.profile`)."""

    dialect = "sqlite"
    types = TYPES

    def __init__(self, path: Path, write_lock_timeout: float = DEFAULT_TIMEOUT, read_only: bool = False,
                 attach: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.read_only = read_only
        self.attach = dict(attach or {})
        self.writes = WriteQueue(path, write_lock_timeout, create=not read_only)
        self._busy_timeout_ms = max(1, round(write_lock_timeout * 1000))  # writers outside the queue (sqlite3 shell)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._connection()  # says now, in one line, when the database cannot be opened

    def _open(self) -> sqlite3.Connection:
        """A new connection. Read-only, it refuses every write (`query_only`); SQLite's WAL
        still makes its `-wal` and `-shm` files to read, and removes them when the last
        connection closes. A user who may not create them there (who may only read the
        store) opens the database read-only instead, and when no one has it open (no `-wal`
        file: nothing is committed but not yet in the database) `immutable`, as it is."""
        by_reader = self.read_only and not os.access(self.path.parent, os.W_OK)
        immutable = by_reader and not os.path.exists(f"{self.path}-wal")
        if by_reader and not immutable and not os.path.exists(f"{self.path}-shm"):
            raise StoreError(f"cannot read the catalog {self.path}: its -wal holds commits not in the database yet, and "
                             f"SQLite needs {self.path.name}-shm beside it to read them, which cannot be made in a folder "
                             "this user may not write (or on a read-only filesystem); let the store's owner run any "
                             "assetfs command on it where it can be written, which moves them into the database")
        try:
            connection = sqlite3.connect(_uri(self.path, by_reader, immutable), uri=True, isolation_level=None,
                                         check_same_thread=False, timeout=self._busy_timeout_ms / 1000)
            if self.read_only:
                connection.execute("pragma query_only = on")
            for name, database in self.attach.items():
                connection.execute("attach database ? as " + name, (_uri(Path(database), read_only=True),))
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the catalog {self.path}"
                             f"{' or the databases it attaches' if self.attach else ''}: {first_line(error)}") from None
        connection.row_factory = _dict_row
        with self._lock:
            self._connections.append(connection)  # closed by `close`
        return connection

    def _connection(self, background: bool = False) -> sqlite3.Connection:
        """This thread's connection; background writes have their own, which does not
        checkpoint in its commits (`_checkpoint`)."""
        name = "background" if background else "connection"
        connection = getattr(self._local, name, None)
        if connection is None:
            connection = self._open()
            connection.execute(f"pragma busy_timeout = {self._busy_timeout_ms}")
            if not self.read_only:
                connection.execute("pragma main.journal_mode = wal")  # once set, it stays: this only reads it
            connection.execute("pragma synchronous = full")
            connection.execute("pragma foreign_keys = on")
            if background:
                connection.execute("pragma wal_autocheckpoint = 0")
                self._local.checkpointed = 0  # its total_changes at its last checkpoint
            setattr(self._local, name, connection)
        return connection

    def read_now(self, sql: str, params: Mapping[str, Any]) -> list[Row]:
        """On a connection of its own (per thread) that never waits: no busy timeout (a lock
        in the way is SQLITE_BUSY at once, not a sleep) and a progress handler that stops the
        statement after `READ_NOW_STEPS` steps. WAL readers take no lock a writer holds, so
        this answers at once unless the WAL is being recovered or reset. One statement in
        autocommit, read to its end: its read transaction ends with it."""
        connection = getattr(self._local, "read_now", None)
        if connection is None:
            connection = self._open()
            connection.execute("pragma busy_timeout = 0")
            connection.execute("pragma query_only = on")
            self._local.read_now_bound = _StepBound()
            connection.set_progress_handler(self._local.read_now_bound, PROGRESS_STEPS)
            self._local.read_now = connection
        self._local.read_now_bound.calls = 0
        try:
            return connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError as error:
            if _code(error) in (*LOCKED, sqlite3.SQLITE_INTERRUPT):
                raise WouldWait() from None
            raise

    @contextmanager
    def transaction(self, write: bool = False, durable: bool = True, background: bool = False) -> Iterator[Transaction]:
        background = background and write
        if write and self.read_only:
            raise StoreError(f"the catalog {self.path} was opened read-only; this command may not change it")
        connection = self._connection(background)
        relaxed = write and not durable
        try:
            if relaxed:  # WAL with synchronous=normal: the commit appends to the WAL without fsync
                connection.execute("pragma synchronous = normal")
            try:
                with self.writes.turn(background) if write else nullcontext() as turn:
                    if write and self.attach:
                        # BEGIN IMMEDIATE would take the write lock of every attached database
                        # too, which are read-only; a write that changes no row takes main's alone
                        connection.execute("begin")
                        connection.execute("update main.schema_version set version = version where 0")
                    else:
                        connection.execute("begin immediate" if write else "begin")
                    try:
                        yield SqliteTransaction(connection, turn, self.read_only)
                        connection.execute("commit")
                    except BaseException:
                        if connection.in_transaction:  # SQLite rolls back by itself after some errors (SQLITE_FULL)
                            connection.execute("rollback")
                        raise
            finally:
                if relaxed:
                    connection.execute("pragma synchronous = full")
            if background:
                self._checkpoint(connection)
        except sqlite3.OperationalError as error:
            if _code(error) == sqlite3.SQLITE_FULL:
                raise StoreError(f"the catalog {self.path} cannot grow: the disk is full; the change was not made",
                                 errno.ENOSPC) from None
            raise

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        """Copy the WAL into the database once this background connection has changed
        `CHECKPOINT_ROWS` rows since it last did. A commit's automatic checkpoint would run
        with the write lock still taken, making the writers queued behind it wait; done here,
        after the turn, a PASSIVE checkpoint runs beside them and waits for no one."""
        if connection.total_changes - self._local.checkpointed < CHECKPOINT_ROWS:
            return
        self._local.checkpointed = connection.total_changes
        try:
            connection.execute("pragma main.wal_checkpoint(passive)")
        except sqlite3.OperationalError:
            pass  # the transaction committed; the WAL is copied later (by this, or by a writer's commit)

    def is_retryable(self, error: BaseException) -> bool:
        """A lock another connection held past the busy timeout (SQLITE_BUSY, SQLITE_LOCKED)."""
        return isinstance(error, sqlite3.OperationalError) and _code(error) in LOCKED

    def sync(self) -> None:
        """Commits without fsync left their frames in the WAL file: flushing it makes them
        durable (frames a checkpoint already copied were flushed by that checkpoint)."""
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    def describe(self) -> str:
        return f"sqlite:{self.path}"
