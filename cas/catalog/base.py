"""What both catalog backends offer: transactions that run SQL with `:name` parameters.

SQL in assetfs is written once, with named `:param` placeholders and only syntax that
SQLite (3.35+) and PostgreSQL share. Each backend translates what differs: placeholders,
DDL types, how a write transaction starts and how the blob lock is taken.
"""

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

Row = dict[str, Any]
T = TypeVar("T")


def first_line(error: BaseException) -> str:
    """A database error's first line (psycopg adds DETAIL, HINT and LINE lines): what the user sees."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class RuleError(Exception):
    """An operator's query (a bucket rule) failed, wrote, or ran out of time; `timed_out`
    says which of the last. The transaction it ran in is still usable."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def in_list(values: Sequence[Any], prefix: str = "id") -> tuple[str, dict[str, Any]]:
    """The placeholders of an `in (…)` list of `values` (`:id0, :id1, …`) and their parameters."""
    return (", ".join(f":{prefix}{index}" for index in range(len(values))),
            {f"{prefix}{index}": value for index, value in enumerate(values)})


class WouldWait(Exception):
    """`Catalog.read_now` could not answer without waiting: ask again the ordinary way."""


class Reads(ABC):
    """Reads of catalog rows, as dicts: a transaction's, or a view's answered at once
    (`Catalog.read_now`)."""

    @abstractmethod
    def one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None: ...

    @abstractmethod
    def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...

    def value(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        row = self.one(sql, params)
        return None if row is None else next(iter(row.values()))


class Transaction(Reads):
    """One open catalog transaction; rows come back as dicts."""

    @abstractmethod
    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    @abstractmethod
    def guarded_one(self, sql: str, params: Mapping[str, Any], timeout: float) -> Row | None:
        """`one` for SQL the store did not write (bucket rules, docs/design.md "Model"): run
        read-only and stopped after `timeout` seconds, inside a savepoint that is rolled back
        afterwards, so the query can neither change rows nor hold this transaction's locks
        for long. RuleError when it fails or times out; this transaction stays usable."""

    @abstractmethod
    def lock_blob(self, hash_hex: str) -> None:
        """Hold the blob lock for `hash_hex` until this transaction ends (docs/concurrency.md)."""

    @abstractmethod
    def try_lock_blob(self, hash_hex: str) -> bool:
        """`lock_blob` without waiting: False when another transaction holds it (the garbage
        collector skips such a blob rather than make a put wait, or deadlock with it)."""

    def writers_waiting(self) -> bool:
        """Whether another write transaction waits for this one to end. Only a catalog with
        one write lock for everything (SQLite) says so: the collector then ends its batch early."""
        return False

    def lock_schema(self) -> None:
        """Serialize migrations between processes (a write transaction is enough on SQLite)."""

    @abstractmethod
    def has_table(self, name: str) -> bool:
        """Whether the catalog (its own schema, not an application's) has the table `name`."""

    def released(self) -> set[str]:
        """Objects that lost their last name in this transaction (`cas.names` adds them);
        `Catalog.run` hands them to the catalog's `on_released` after the commit."""
        found = self.__dict__.get("_released")
        if found is None:
            found = self.__dict__["_released"] = set()
        return found


class Catalog(ABC):
    """A connection (pool) to the catalog database; thread-safe."""

    dialect: str
    types: dict[str, str]  # the column types migrations name `{uuid}`, `{serial_pk}`, `{float}`
    schema: str | None = None  # PostgreSQL: the schema that holds the catalog's tables
    # Called with the objects that lost their last name, after the transaction that removed
    # it committed: the mount and the CLI check at once whether anything else refers to them
    # (docs/concurrency.md, "A name let go").
    on_released: Callable[[set[str]], None] | None = None

    @abstractmethod
    def transaction(self, write: bool = False, durable: bool = True,
                    background: bool = False) -> AbstractContextManager[Transaction]:
        """A transaction; `write=True` for any that may change rows or blob files.

        `durable=False` commits without waiting for the disk: the change is atomic and
        ordered like any other, survives the process being killed, and becomes durable with
        the next durable commit or `sync` (on a power loss it may be lost, together with
        everything committed after it). The mount's changes to names are committed this
        way, as a local filesystem's are (docs/concurrency.md, "Durability").

        A `background` write (the collector's) lets write transactions that wait for the
        write lock go first (SQLite; docs/concurrency.md, "Waiting for the write lock").

        The body may run again when the database reports a conflict it resolves by retrying
        (deadlock, busy): callers use `run` for that, which retries the whole function.
        """

    @abstractmethod
    def is_retryable(self, error: BaseException) -> bool: ...

    def schema_setup(self) -> list[str]:
        """Statements that make room for a new catalog's tables (PostgreSQL: its schema)."""
        return []

    def tables_elsewhere(self) -> str | None:
        """Where an older assetfs made this catalog's tables, when not where they are looked
        for now (PostgreSQL: a schema on the connection's search_path); None when nowhere."""
        return None

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the catalog lives, without secrets: for messages and `assetfs stats`."""

    @abstractmethod
    def sync(self) -> None:
        """Make every transaction committed so far durable (those with `durable=False` too)."""

    def read_now(self, sql: str, params: Mapping[str, Any]) -> list[Row]:
        """The rows of a small read, answered at once or not at all: for a caller on an event
        loop, which must not wait (the HTTP server's lookups). Raises WouldWait when the
        answer would mean waiting: always here (PostgreSQL: a network round trip); SQLite
        answers from its own file when no lock is in the way."""
        raise WouldWait()

    def run(self, work: Callable[["Transaction"], T], write: bool = True, attempts: int = 8,
            durable: bool = True, background: bool = False) -> T:
        """Run `work(tx)` in a transaction, again from the start if the database asks to retry."""
        for attempt in range(attempts):
            try:
                with self.transaction(write=write, durable=durable, background=background) as tx:
                    result = work(tx)
            except Exception as error:
                if attempt + 1 == attempts or not self.is_retryable(error):
                    raise
                time.sleep(random.uniform(0, 0.05 * 2**attempt))
                continue
            if self.on_released is not None and tx.released():
                self.on_released(set(tx.released()))
            return result
        raise AssertionError("unreachable")

    def pages(self, sql: str, params: Mapping[str, Any], key: str, start: Any, size: int = 1000) -> Iterator[list[Row]]:
        """Rows of `sql` in `key` order, a page (one short transaction) at a time.

        `sql` filters with `:after` on `key` and ends `order by <key> limit :limit`; the first
        page starts after `start`. Memory stays bounded however many rows match.
        """
        after = start
        while True:
            with self.transaction() as tx:
                rows = tx.all(sql, {**params, "after": after, "limit": size})
            if rows:
                yield rows
            if len(rows) < size:
                return
            after = rows[-1][key]
