"""The shared catalog: PostgreSQL through psycopg 3 and a connection pool.

Transactions run at READ COMMITTED. The blob lock is a transaction-scoped advisory lock
keyed by the blob's hash (docs/concurrency.md): unlike a row lock it also exists for a blob
that has no row yet, which is exactly the case of a first upload racing a sweep or fsck.
"""

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader

from cas.catalog.base import Catalog, Row, RuleError, Transaction, first_line
from cas.errors import CatalogError

TYPES = {"uuid": "uuid", "serial_pk": "bigint generated always as identity primary key", "float": "double precision"}
CONNECT_TIMEOUT = 5  # seconds
SCHEMA_LOCK_KEY = 0x61737365746673  # "assetfs"
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_PARAMETER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


def translate(sql: str) -> str:
    """`:name` placeholders to psycopg's `%(name)s` (and literal `%` to `%%`)."""
    return _PARAMETER.sub(r"%(\1)s", sql.replace("%", "%%"))


def blob_lock_key(hash_hex: str) -> int:
    """A signed 64-bit advisory-lock key from the first 16 hex digits of the hash."""
    key = int(hash_hex[:16], 16)
    return key - 2**64 if key >= 2**63 else key


class PostgresTransaction(Transaction):
    def __init__(self, connection: psycopg.Connection, catalog: "PostgresCatalog") -> None:
        self.connection = connection
        self.catalog = catalog

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.connection.execute(translate(sql), params or {})

    def one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        return self.connection.execute(translate(sql), params or {}).fetchone()

    def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return self.connection.execute(translate(sql), params or {}).fetchall()

    def guarded_one(self, sql: str, params: Mapping[str, Any], timeout: float) -> Row | None:
        # Going read-only is allowed at any point of a transaction; SET LOCAL inside the
        # savepoint ends with it, so the rollback below makes the transaction writable again.
        self.connection.execute("savepoint assetfs_guarded")
        try:
            self.connection.execute("set local transaction_read_only = on")
            # the application's names first (its search_path), then the catalog's tables
            self.connection.execute("select set_config('search_path', %s, true)",
                                    (self.catalog.rule_search_path(self.connection),))
            self.connection.execute(f"set local statement_timeout = {max(1, round(timeout * 1000))}")
            row = self.connection.execute(translate(sql), params).fetchone()
        except psycopg.Error as error:
            if isinstance(error, _RETRYABLE):
                raise  # the whole transaction is retried (Catalog.run)
            self.connection.execute("rollback to savepoint assetfs_guarded")
            self.connection.execute("release savepoint assetfs_guarded")
            timed_out = isinstance(error, psycopg.errors.QueryCanceled)
            raise RuleError(first_line(error), timed_out=timed_out) from None
        self.connection.execute("rollback to savepoint assetfs_guarded")
        self.connection.execute("release savepoint assetfs_guarded")
        return row

    def lock_blob(self, hash_hex: str) -> None:
        self.connection.execute("select pg_advisory_xact_lock(%s)", (blob_lock_key(hash_hex),))

    def try_lock_blob(self, hash_hex: str) -> bool:
        row = self.connection.execute("select pg_try_advisory_xact_lock(%s) as locked", (blob_lock_key(hash_hex),)).fetchone()
        return bool(row["locked"])

    def lock_schema(self) -> None:
        self.connection.execute("select pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))

    def has_table(self, name: str) -> bool:
        row = self.connection.execute(
            "select exists (select 1 from pg_tables where schemaname = %s and tablename = %s) as found",
            (self.catalog.schema, name)).fetchone()
        return bool(row["found"])


def connect_options(url: str) -> dict[str, Any]:
    """autocommit (transactions are explicit), and CONNECT_TIMEOUT unless the URL or
    PGCONNECT_TIMEOUT sets one: a server that does not answer is reported in seconds."""
    options: dict[str, Any] = {"autocommit": True}
    try:
        given = "connect_timeout" in psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        given = False  # psycopg.connect reports the bad URL
    if not given and "PGCONNECT_TIMEOUT" not in os.environ:
        options["connect_timeout"] = CONNECT_TIMEOUT
    return options


def quote_schema(schema: str) -> str:
    """A schema name as an SQL identifier (cas/config.py allows only [a-z_][a-z0-9_]*)."""
    return '"' + schema.replace('"', '""') + '"'


# the last schema version an assetfs made in whatever schema the connection's search_path
# named; from then on a catalog has a schema of its own (`database_schema`)
LAST_VERSION_IN_SEARCH_PATH = 8


class PostgresCatalog(Catalog):
    """The catalog's tables are in their own schema (`database_schema`, default `assetfs`):
    every connection's search_path is that schema alone, so the catalog's SQL finds its
    tables and never an application's of the same name. Bucket rules run with the
    connection's own search_path (the application's, from the URL or the role) followed by
    the catalog's schema (docs/schema.md, "Where the tables are").

    `read_only`: every transaction is READ ONLY (the read commands: docs/upgrade.md); a role
    with SELECT alone can use such a catalog."""

    dialect = "postgres"
    types = TYPES

    def __init__(self, url: str, schema: str = "assetfs", read_only: bool = False, max_connections: int = 8) -> None:
        self.url = url
        self.schema = schema
        self.read_only = read_only
        self.app_search_path = ""  # the connection's search_path before the catalog's replaced it
        self._rule_search_path: str | None = None
        kwargs = connect_options(url)
        try:
            # One connection first: the pool would retry a refused one in the background and
            # report only that it timed out; this says why (a wrong password, no server).
            psycopg.connect(url, **kwargs).close()
            self.pool = psycopg_pool.ConnectionPool(
                url, min_size=1, max_size=max_connections, open=False, configure=self._configure,
                kwargs=kwargs, timeout=30,
            )
            self.pool.open(wait=True, timeout=15)
        except psycopg.Error as error:  # psycopg_pool.PoolTimeout is one
            raise CatalogError(f"cannot connect to the catalog database {self.describe()}: {first_line(error)}") from None

    def _configure(self, connection: psycopg.Connection) -> None:
        connection.row_factory = dict_row
        connection.adapters.register_loader("uuid", TextLoader)  # ids are str everywhere in assetfs
        row = connection.execute("select current_setting('search_path') as path").fetchone()
        self.app_search_path = row["path"]
        connection.execute("select set_config('search_path', %s, false)", (quote_schema(self.schema),))
        if self.read_only:
            connection.execute("set default_transaction_read_only = on")

    def rule_search_path(self, connection: psycopg.Connection) -> str:
        """The schemas the connection's own search_path names (`"$user"` resolved; the
        catalog's own left out, even when the role's name makes `"$user"` it), then the
        catalog's. Worked out once, inside the caller's savepoint, then kept."""
        if self._rule_search_path is None:
            connection.execute("select set_config('search_path', %s, true)", (self.app_search_path,))
            row = connection.execute("select current_schemas(false) as schemas").fetchone()
            schemas = [schema for schema in row["schemas"] if schema != self.schema] + [self.schema]
            self._rule_search_path = ", ".join(map(quote_schema, schemas))
        return self._rule_search_path

    def schema_setup(self) -> list[str]:
        return [f"create schema if not exists {quote_schema(self.schema)}"]

    def tables_elsewhere(self) -> str | None:
        if not self.app_search_path.strip():
            return None
        with self.transaction() as tx:
            tx.value("select set_config('search_path', :path, true)", {"path": self.app_search_path})
            found = tx.value("select n.nspname as schema from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                             "where c.oid = to_regclass('schema_version')")
            if found in (None, self.schema):
                return None
            # a catalog of a later version is another store's, whose assetfs knew its schema
            version = tx.value(f'select max(version) as version from "{found}".schema_version')
        return found if version is not None and version <= LAST_VERSION_IN_SEARCH_PATH else None

    @contextmanager
    def transaction(self, write: bool = False, durable: bool = True, background: bool = False) -> Iterator[Transaction]:
        # `background` changes nothing: writers of different rows and blobs do not wait for each other
        with self.pool.connection() as connection:
            with connection.transaction():
                if write and not durable:
                    connection.execute("set local synchronous_commit = off")
                yield PostgresTransaction(connection, self)

    def sync(self) -> None:
        """A synchronous commit flushes the server's WAL up to it, so every asynchronous
        commit before it too; `txid_current()` makes sure there is a commit record to wait for."""
        with self.transaction(write=True) as tx:
            tx.value("select txid_current()")

    def is_retryable(self, error: BaseException) -> bool:
        return isinstance(error, _RETRYABLE)

    def close(self) -> None:
        self.pool.close()

    def describe(self) -> str:
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.ProgrammingError:
            return "postgresql (unparsable database_url)"
        host = info.get("host", "localhost")
        return (f"postgresql://{info.get('user', '')}@{host}:{info.get('port', 5432)}/{info.get('dbname', '')}"
                f", schema {self.schema}")

