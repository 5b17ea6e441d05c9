"""The metadata catalog: SQLite in the store by default, PostgreSQL when `database_url` is set."""

from pathlib import Path

from cas.catalog.base import Catalog, Transaction


def open_catalog(store_root: Path, database_url: str | None) -> Catalog:
    if database_url:
        from cas.catalog.postgres import PostgresCatalog

        return PostgresCatalog(database_url)
    from cas.catalog.sqlite import SqliteCatalog

    return SqliteCatalog(store_root / "catalog.db")


__all__ = ["Catalog", "Transaction", "open_catalog"]
