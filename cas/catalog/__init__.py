"""The metadata catalog: SQLite in the store by default, PostgreSQL when `database_url` is set."""

import sqlite3
import sys
from collections.abc import Mapping
from pathlib import Path

from cas.catalog.base import Catalog, Transaction


def open_catalog(store_root: Path, database_url: str | None, write_lock_timeout: float = 30.0,
                 schema: str = "assetfs", read_only: bool = False, attach: Mapping[str, str] | None = None) -> Catalog:
    """The store's catalog, as it is: opening changes nothing (cas/catalog/migrate.py checks
    and upgrades its schema). On SQLite a writer waits at most `write_lock_timeout` seconds
    for the write lock (then `Busy`). `read_only`: no transaction may write; `schema`: the
    PostgreSQL schema of its tables; `attach`: SQLite databases bucket rules may read."""
    if database_url:
        from cas.catalog.postgres import PostgresCatalog

        return PostgresCatalog(database_url, schema=schema, read_only=read_only)
    from cas.catalog.sqlite import SqliteCatalog

    return SqliteCatalog(store_root / "catalog.db", write_lock_timeout, read_only=read_only, attach=attach)


def is_database_error(error: BaseException) -> bool:
    """Whether `error` is one the catalog's database raised (its type, not its text)."""
    types: list[type[BaseException]] = [sqlite3.Error]
    psycopg = sys.modules.get("psycopg")  # not imported: no PostgreSQL catalog was opened
    if psycopg is not None:
        types.append(psycopg.Error)
    return isinstance(error, tuple(types))


__all__ = ["Catalog", "Transaction", "is_database_error", "open_catalog"]
