"""The metadata catalog: SQLite in the store by default, PostgreSQL when `database_url` is set."""

import sqlite3
import sys
from pathlib import Path

from cas.catalog.base import Catalog, Transaction


def open_catalog(store_root: Path, database_url: str | None, write_lock_timeout: float = 30.0) -> Catalog:
    """The store's catalog; on SQLite a writer waits at most `write_lock_timeout` seconds
    for the write lock (then `Busy`)."""
    if database_url:
        from cas.catalog.postgres import PostgresCatalog

        return PostgresCatalog(database_url)
    from cas.catalog.sqlite import SqliteCatalog

    return SqliteCatalog(store_root / "catalog.db", write_lock_timeout)


def is_database_error(error: BaseException) -> bool:
    """Whether `error` is one the catalog's database raised (its type, not its text)."""
    types: list[type[BaseException]] = [sqlite3.Error]
    psycopg = sys.modules.get("psycopg")  # not imported: no PostgreSQL catalog was opened
    if psycopg is not None:
        types.append(psycopg.Error)
    return isinstance(error, tuple(types))


__all__ = ["Catalog", "Transaction", "is_database_error", "open_catalog"]
