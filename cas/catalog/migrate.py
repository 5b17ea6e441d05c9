"""Schema versions: the check every opening of a store makes, and `assetfs migrate`.

Opening a store never changes its schema (docs/upgrade.md): it reads `schema_version` and
refuses a catalog older or newer than this assetfs with one line that says what to run, so
an upgraded server never changes the catalog under servers that still run the older
version. `assetfs init` creates the schema; `assetfs migrate` applies the migrations the
catalog lacks, all in one transaction under the schema lock (two servers that migrate at
once: the second finds nothing left to do). The plan is plain SQL: `--dry-run` prints it.
"""

import time
from typing import TYPE_CHECKING

from cas.catalog.schema import MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE
from cas.errors import CatalogNewer, CatalogOutdated, SchemaMismatch

if TYPE_CHECKING:
    from cas.catalog.base import Catalog, Transaction


def assetfs_version() -> str:
    from importlib import metadata  # imported here: every command opens a store, few need this

    try:
        return metadata.version("assetfs")
    except metadata.PackageNotFoundError:  # run from a checkout that was not installed
        return "(unreleased)"


def version_in(tx: "Transaction") -> int:
    """The schema version of the catalog `tx` reads: 0 when it has no tables yet."""
    if not tx.has_table("schema_version"):
        return 0
    return tx.value("select coalesce(max(version), 0) as version from schema_version") or 0


def current_version(catalog: "Catalog") -> int:
    return catalog.run(version_in, write=False)


def check_version(catalog: "Catalog", store_command: str) -> None:
    """Refuse a catalog whose schema is not this assetfs's; `store_command` is how to name
    this store on the command line (`assetfs --store /srv/store`), for the fix it suggests."""
    current = current_version(catalog)
    if current != SCHEMA_VERSION:
        raise mismatch(catalog, current, store_command)


def mismatch(catalog: "Catalog", current: int, store_command: str) -> SchemaMismatch:
    where = catalog.describe()
    if current > SCHEMA_VERSION:
        return CatalogNewer(
            f"the catalog ({where}) has schema version {current}, newer than this assetfs {assetfs_version()} "
            f"knows ({SCHEMA_VERSION}); upgrade assetfs on this server (docs/upgrade.md)")
    if current == 0:
        elsewhere = catalog.tables_elsewhere()
        if elsewhere is not None:
            return SchemaMismatch(
                f"the catalog ({where}) is in schema {elsewhere!r}, where an older assetfs made it, not in "
                f"{catalog.schema!r}: add database_schema = \"{elsewhere}\" to assetfs.toml (docs/upgrade.md)")
        return CatalogOutdated(f"the catalog ({where}) has no assetfs tables; create them with '{store_command} init'")
    return CatalogOutdated(
        f"the catalog ({where}) has schema version {current}, this assetfs {assetfs_version()} needs "
        f"{SCHEMA_VERSION}: run '{store_command} migrate' (docs/upgrade.md)")


def plan(catalog: "Catalog", current: int, target: int = SCHEMA_VERSION) -> list[str]:
    """The statements that take a catalog from version `current` to `target`, in order."""
    statements: list[str] = []
    if current == 0:
        statements += catalog.schema_setup()
        statements.append(VERSION_TABLE.format(**catalog.types))
    now = time.time()
    for version in range(current + 1, target + 1):
        for item in MIGRATIONS[version - 1]:  # a statement, or one list of them per database
            for statement in item.get(catalog.dialect, []) if isinstance(item, dict) else [item]:
                statements.append(statement.format(**catalog.types))
        statements.append(f"insert into schema_version (version, applied_at) values ({version}, {now!r})")
    return statements


def migrate(catalog: "Catalog", dry_run: bool = False, target: int = SCHEMA_VERSION) -> tuple[int, list[str]]:
    """Apply (or with `dry_run`, only plan) the migrations up to `target`, in one write
    transaction; returns the version the catalog had and the statements. Refuses a catalog
    newer than this assetfs. Tests pass a smaller `target` to make an older catalog."""

    def apply(tx: "Transaction") -> tuple[int, list[str]]:
        if not dry_run:
            tx.lock_schema()
        current = version_in(tx)
        if current > SCHEMA_VERSION:
            raise mismatch(catalog, current, "assetfs")
        statements = plan(catalog, current, target) if current < target else []
        if not dry_run:
            for statement in statements:
                tx.execute(statement)
        return current, statements

    return catalog.run(apply, write=not dry_run)
