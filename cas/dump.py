"""`assetfs dump` and `assetfs load`: the catalog as a portable stream of JSON lines.

The stream names tables and columns, never an engine's types, so a catalog dumped from
SQLite loads into PostgreSQL and back (docs/backup.md). It is read in one snapshot (a
repeatable-read transaction on PostgreSQL, one read transaction on SQLite) while writers go
on, a page at a time in key order, so memory stays bounded:

    {"format": "assetfs-dump", "version": 1, "schema_version": 11, "store_id": …, "taken_at": …,
     "source": "sqlite", "node_sequence": 812, "sweep_pause": {…} | null, "settings": {…}}
    {"table": "buckets", "row": {"name": "photos", "root_node": 1, "created_at": 1795990000.5}}
    …
    {"end": {"buckets": 3, "blobs": 120, …}}

What is left out is transient: `gc_failures` (the collector's retry bookkeeping: it finds a
failing row again), `mounts` and `mount_nodes` (processes on the old machine; the nameless
nodes a mount kept for its open files are left out with them), `sweep_pauses` (the
backup's own), `schema_version` (the loading catalog has its own, which must be equal),
blob rows no object uses (garbage, which the collector would free) and nothing else.
Bucket settings and rules live in `assetfs.toml`, not the catalog: the header records them
and `load` says where the loading store's differ.

`load` fills an empty catalog in one transaction: all of the stream or nothing.
"""

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from cas import privacy, storeid, sweeppause
from cas.catalog import Catalog, Transaction
from cas.catalog.migrate import version_in
from cas.catalog.schema import SCHEMA_VERSION
from cas.config import Config, load_config
from cas.dumprows import RowChecks, check_node_sequence
from cas.errors import BadInput
from cas.model import iso_time
from cas.store import ZERO_ID, Store

FORMAT, VERSION = "assetfs-dump", 1
PAGE = 1000
BATCH_ROWS = 200  # rows per insert statement: 200 × 13 columns stays far below SQLite's 32,766 parameters

# (table, key columns and where each starts, which rows): in an order that loads with every
# foreign key's target before its rows
TABLES: tuple[tuple[str, tuple[tuple[str, Any], ...], str], ...] = (
    ("buckets", (("name", ""),), "true"),
    ("blobs", (("hash", ""),), "exists (select 1 from objects o where o.hash = t.hash)"),
    ("objects", (("id", ZERO_ID),), "true"),
    ("nodes", (("id", -1),), "(exists (select 1 from entries e where e.node_id = t.id) "
                             "or exists (select 1 from buckets b where b.root_node = t.id))"),
    ("entries", (("parent_id", -1), ("name", "")), "true"),
    ("holds", (("object_id", ZERO_ID), ("owner", "")), "true"),
    ("tokens", (("id", ""),), "true"),
)
TABLE_NAMES = tuple(table for table, _, _ in TABLES)


def settings_of(config: Config) -> dict[str, Any]:
    """The bucket settings and rules of `assetfs.toml` (durations in seconds)."""
    def bucket(settings: Any) -> dict[str, Any]:
        return {**asdict(settings), "rules": list(settings.rules)}

    return {"bucket_defaults": bucket(config.bucket_defaults),
            "buckets": {name: bucket(settings) for name, settings in sorted(config.buckets.items())}}


# dump ------------------------------------------------------------------------------------


def dump(store: Store, write: Callable[[str], None], pause_for: float | None) -> dict[str, Any]:
    """Write the catalog to `write`, a line at a time; return the header. With `pause_for`,
    a sweep pause of that many seconds is taken first (cas/sweeppause.py)."""
    pause = None if not pause_for else sweeppause.start(store.catalog, pause_for)
    try:
        return _dump_snapshot(store, write, pause)
    except BaseException:
        if pause is not None:  # no dump, no copy to wait for; the dump's own error is the one to report
            with contextlib.suppress(Exception):
                sweeppause.end(store.catalog, pause.id)
        raise


def _dump_snapshot(store: Store, write: Callable[[str], None], pause: sweeppause.Pause | None) -> dict[str, Any]:
    catalog = store.catalog
    with catalog.transaction() as tx:
        if catalog.dialect == "postgres":
            tx.execute("set transaction isolation level repeatable read, read only")
        header = {
            "format": FORMAT, "version": VERSION, "schema_version": version_in(tx),
            "store_id": storeid.catalog_id(tx), "taken_at": iso_time(time.time()), "source": catalog.dialect,
            "node_sequence": _node_sequence(tx, catalog.dialect),
            "sweep_pause": None if pause is None else {"id": pause.id, "ends_at": iso_time(pause.ends_at)},
            "settings": settings_of(store.config),
        }
        write(json.dumps(header) + "\n")
        counts = {}
        for table, keys, where in TABLES:
            counts[table] = 0
            for row in _rows(tx, table, keys, where):
                write(json.dumps({"table": table, "row": row}) + "\n")
                counts[table] += 1
        write(json.dumps({"end": counts}) + "\n")
    return header


def _rows(tx: Transaction, table: str, keys: tuple[tuple[str, Any], ...], where: str) -> Iterator[dict[str, Any]]:
    """Every row of `table` that `where` keeps, in key order, a page at a time (one snapshot)."""
    names = [name for name, _ in keys]
    columns = ", ".join(f"t.{name}" for name in names)
    placeholders = ", ".join(f":after_{name}" for name in names)
    sql = (f"select * from {table} t where {where} and ({columns}) > ({placeholders}) "
           f"order by {columns} limit :limit")
    after = {f"after_{name}": start for name, start in keys}
    while True:
        rows = tx.all(sql, {**after, "limit": PAGE})
        yield from rows
        if len(rows) < PAGE:
            return
        after = {f"after_{name}": rows[-1][name] for name in names}


def _node_sequence(tx: Transaction, dialect: str) -> int:
    """The highest node id ever given out: node ids are never reused (docs/schema.md)."""
    if dialect == "postgres":
        value = tx.value("select pg_sequence_last_value(pg_get_serial_sequence('nodes', 'id')::regclass) as seq")
    else:
        value = tx.value("select seq from sqlite_sequence where name = 'nodes'")
    return int(value or 0)


def _set_node_sequence(tx: Transaction, dialect: str, value: int) -> None:
    highest = max(value, int(tx.value("select coalesce(max(id), 0) as id from nodes")))
    if highest < 1:
        return
    if dialect == "postgres":
        tx.execute("select setval(pg_get_serial_sequence('nodes', 'id'), :value)", {"value": highest})
    else:
        tx.execute("delete from sqlite_sequence where name = 'nodes'")
        tx.execute("insert into sqlite_sequence (name, seq) values ('nodes', :value)", {"value": highest})


# load ------------------------------------------------------------------------------------


def load(store: Store, lines: Iterable[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """Fill the store's empty catalog from a dump, all of it or nothing: (header, row counts).
    BadInput, changing nothing, for a catalog that is not empty or a stream that is not a
    whole dump of this schema version."""
    stream = _records(lines)
    header = _header(next(stream, None))
    catalog = store.catalog

    def fill(tx: Transaction) -> dict[str, int]:
        counts = _refuse_unless_empty(tx, catalog)
        storeid.check_loadable(store.root, header["store_id"])
        batch, checks = _Batch(tx, catalog.dialect), RowChecks()
        for number, record in stream:
            if "end" in record:
                batch.flush()
                if counts != record["end"]:
                    raise BadInput(f"line {number}: the dump's end counts {record['end']} rows, it held {counts}")
                if next(stream, None) is not None:
                    raise BadInput(f"line {number + 1}: text after the dump's end")
                _set_node_sequence(tx, catalog.dialect, header["node_sequence"])
                storeid.give_loaded_id(store.root, tx, header["store_id"])
                return counts
            table, row = _row_record(number, record, checks)
            batch.add(table, row)
            counts[table] += 1
        raise BadInput("the dump ends early (no end line): it is incomplete; nothing was loaded")

    return header, catalog.run(fill, attempts=1)


def _records(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        yield from _parsed(lines)
    except UnicodeDecodeError:
        raise BadInput("the dump is not text (UTF-8): not an assetfs dump; nothing was loaded") from None


def _parsed(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise BadInput(f"line {number} of the dump is not JSON ({error.msg}); nothing was loaded") from None
        if not isinstance(record, dict):
            raise BadInput(f"line {number} of the dump is not a JSON object; nothing was loaded")
        yield number, record


def _header(first: tuple[int, dict[str, Any]] | None) -> dict[str, Any]:
    if first is None:
        raise BadInput("the dump is empty; nothing was loaded")
    _, header = first
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise BadInput(f"not an assetfs dump (version {VERSION}): its first line says "
                       f"{str({k: header.get(k) for k in ('format', 'version')})}; nothing was loaded")
    if header.get("schema_version") != SCHEMA_VERSION:
        raise BadInput(f"the dump has catalog schema version {header.get('schema_version')}, this assetfs "
                       f"{SCHEMA_VERSION}: load it with the assetfs version that made it; nothing was loaded")
    store_id = header.get("store_id")
    if not isinstance(store_id, str) or len(store_id) != storeid.ID_LENGTH:
        raise BadInput("the dump's first line has no store id; nothing was loaded")
    check_node_sequence(header.get("node_sequence"))
    return header


def _refuse_unless_empty(tx: Transaction, catalog: Catalog) -> dict[str, int]:
    found = {table: tx.value(f"select count(*) as n from {table}") for table in TABLE_NAMES}
    held = ", ".join(f"{count} {table}" for table, count in found.items() if count)
    if held:
        raise BadInput(f"the catalog {catalog.describe()} is not empty ({held}): load fills an empty catalog "
                       f"only; nothing was loaded")
    return {table: 0 for table in TABLE_NAMES}


def _row_record(number: int, record: dict[str, Any], checks: RowChecks) -> tuple[str, dict[str, Any]]:
    """The table and row of a line, every value checked (cas/dumprows.py)."""
    table, row = record.get("table"), record.get("row")
    if table not in TABLE_NAMES or not isinstance(row, dict) or not row:
        raise BadInput(f"line {number} of the dump is not a row of a catalog table; nothing was loaded")
    checks.check(number, table, row)
    return table, row


class _Batch:
    """Rows of one table with the same columns, inserted by one statement per BATCH_ROWS
    (a statement per row costs a round trip each on PostgreSQL)."""

    def __init__(self, tx: Transaction, dialect: str) -> None:
        self.tx, self.dialect = tx, dialect
        self.table: str | None = None
        self.columns: tuple[str, ...] = ()
        self.rows: list[dict[str, Any]] = []

    def add(self, table: str, row: dict[str, Any]) -> None:
        if (table, tuple(row)) != (self.table, self.columns) or len(self.rows) >= BATCH_ROWS:
            self.flush()
            self.table, self.columns = table, tuple(row)
        self.rows.append(row)

    def flush(self) -> None:
        if not self.rows:
            return
        columns = ", ".join(self.columns)
        values = ", ".join("(" + ", ".join(f":r{index}_{column}" for column in self.columns) + ")"
                           for index in range(len(self.rows)))
        params = {f"r{index}_{column}": value for index, row in enumerate(self.rows) for column, value in row.items()}
        # node ids are kept (the mount's inode numbers come from them); PostgreSQL's identity
        # column takes them only when told to
        overriding = " overriding system value" if self.dialect == "postgres" and self.table == "nodes" else ""
        self.tx.execute(f"insert into {self.table} ({columns}){overriding} values {values}", params)
        self.rows = []


def settings_differences(dumped: dict[str, Any], config: Config) -> list[str]:
    """Where the loading store's bucket settings and rules differ from the dumped store's."""
    here = settings_of(config)
    lines = []
    if dumped.get("bucket_defaults") != here["bucket_defaults"]:
        lines.append("[bucket_defaults] differs")
    for name in sorted(set(dumped.get("buckets", {})) | set(here["buckets"])):
        if dumped.get("buckets", {}).get(name) != here["buckets"].get(name):
            lines.append(f"[buckets.{name}] differs")
    return lines


def create_private_catalog(root: Path) -> None:
    """A store restored without its SQLite catalog (docs/backup.md) gets an empty one with
    the store's file mode, as `assetfs init` makes it, before SQLite creates it with the umask's."""
    path = root / "catalog.db"
    if load_config(root).database_url is None and not path.exists():
        privacy.create_file(path, privacy.file_mode(root))


@contextlib.contextmanager
def write_file(path: Path, store_root: Path) -> Iterator[IO[str]]:
    """A dump file, its owner's alone (it holds the catalog, token hashes included), that
    appears at `path` only once it is whole: written beside it under a temporary name,
    fsynced and renamed over it; a dump that fails leaves what was at `path` (an earlier
    backup) as it was. A path inside the store is refused (its catalog, its configuration)."""
    target = path.absolute()
    if target.resolve().is_relative_to(store_root.resolve()):
        raise BadInput(f"-o {path}: inside the store {store_root}; write the dump elsewhere (nothing was written)")
    if not target.parent.is_dir():
        raise BadInput(f"-o {path}: no folder {target.parent} (nothing was written)")
    if (target.exists() or target.is_symlink()) and not target.is_file():
        raise BadInput(f"-o {path}: not a regular file; leave -o out to write to standard output (nothing was written)")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as error:
        raise BadInput(f"-o {path}: cannot write in {target.parent}: {error.strerror} (nothing was written)") from None
    partial = Path(name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
