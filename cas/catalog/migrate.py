"""Bring a catalog's schema up to date when it is opened."""

import time
from typing import TYPE_CHECKING

from cas.catalog.schema import MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE
from cas.errors import StoreError

if TYPE_CHECKING:
    from cas.catalog.base import Catalog, Transaction


def migrate(catalog: "Catalog") -> None:
    """Apply the migrations this catalog lacks, all in one write transaction.

    A catalog that is up to date is only read: opening a store needs no write lock, so
    readers work while a writer holds it (or the disk is full)."""
    if _up_to_date(catalog):
        return

    def apply(tx: "Transaction") -> None:
        tx.lock_schema()
        tx.execute(VERSION_TABLE.format(**catalog.types))
        current = tx.value("select coalesce(max(version), 0) as version from schema_version") or 0
        _refuse_newer(current)
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for item in MIGRATIONS[version - 1]:
                for statement in item.get(catalog.dialect, []) if isinstance(item, dict) else [item]:
                    tx.execute(statement.format(**catalog.types))
            tx.execute("insert into schema_version (version, applied_at) values (:version, :now)", {"version": version, "now": time.time()})

    catalog.run(apply, write=True)


def _up_to_date(catalog: "Catalog") -> bool:
    try:
        current = catalog.run(lambda tx: tx.value("select max(version) as version from schema_version"), write=False)
    except Exception:  # no version table yet (a new catalog): the write transaction makes it
        return False
    _refuse_newer(current or 0)
    return current == SCHEMA_VERSION


def _refuse_newer(current: int) -> None:
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the catalog has schema version {current}, newer than this assetfs knows ({SCHEMA_VERSION}); upgrade assetfs"
        )
