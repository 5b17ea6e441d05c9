"""The real parts the many-writers model test (test_model_writers.py) drives: a fresh store
per Hypothesis example (SQLite in a new folder, or a new PostgreSQL schema), two real mounts
of it that can be killed with SIGKILL and mounted again, the `assetfs` CLI, and reads of the
catalog as one transaction.

Everything started here is registered in a `Workbench`, whose `close()` (called from the
test's `finally`) unmounts every mount it started and drops every schema it made, also when
the example failed half-way.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from cas import names
from cas.store import Store
from conftest import ASSETFS, postgres_base_url
from fusefs.mount import mounted_at
from mounting import Mount, start_mount, stop_mount, unmount

BUCKET = "photos"
# a conflict copy beside the original: `photo (conflict 2026-11-29 17.02).png` (issue 11); the
# one place the model test says what a conflict copy's name looks like
CONFLICT_NAME = re.compile(r"^(?P<stem>.+) \(conflict [^()]*\)(?P<ext>\.[^./]*)?$")


def is_conflict_name(name: str) -> bool:
    return CONFLICT_NAME.match(name) is not None


@dataclass
class ObjectRow:
    id: str
    hash: str
    filename: str
    live: bool
    names: list[str] = field(default_factory=list)  # names at the bucket's top
    held: bool = False


@dataclass
class NameRow:
    node: int
    object_id: str | None  # None: a file with no content committed yet (empty)
    hash: str | None
    live: bool  # the object it refers to is live (not in the trash)


@dataclass
class Snapshot:
    """The bucket as the catalog has it, read in one transaction."""

    names: dict[str, NameRow]
    objects: dict[str, ObjectRow]  # by id, live and trashed

    def by_hash(self, hash_hex: str) -> list[ObjectRow]:
        return [row for row in self.objects.values() if row.hash == hash_hex]


def read_snapshot(store: Store) -> Snapshot:
    def read(tx) -> Snapshot:
        root = names.bucket_root(tx, BUCKET)
        objects = {
            row["id"]: ObjectRow(row["id"], row["hash"], row["filename"], row["deleted_at"] is None)
            for row in tx.all("select id, hash, filename, deleted_at from objects where bucket = :bucket",
                              {"bucket": BUCKET})
        }
        for row in tx.all("select distinct object_id from holds"):
            if row["object_id"] in objects:
                objects[row["object_id"]].held = True
        found: dict[str, NameRow] = {}
        if root is not None:
            for row in tx.all(
                "select e.name, n.id as node, n.object_id, o.hash, o.deleted_at from entries e "
                "join nodes n on n.id = e.node_id left join objects o on o.id = n.object_id "
                "where e.parent_id = :root", {"root": root},
            ):
                found[row["name"]] = NameRow(row["node"], row["object_id"], row["hash"],
                                             row["object_id"] is not None and row["deleted_at"] is None)
                if row["object_id"] in objects:
                    objects[row["object_id"]].names.append(row["name"])
        return Snapshot(found, objects)

    return store.catalog.run(read, write=False)


@dataclass
class Workbench:
    """Stores and mounts of one test, each example's cleaned up by `close()`."""

    tmp_path: Path
    catalog: str  # "sqlite" or "postgres"
    mounts: list[Mount] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    stores: list["ModelStore"] = field(default_factory=list)
    examples: int = 0

    def new_store(self, env: dict[str, str]) -> "ModelStore":
        """A fresh store whose collector checks objects at once (`[gc] min_age = "0s"`), so
        that the two `gc` runs of the model have work; grace stays 7 days (nothing is purged
        unless explicitly)."""
        self.examples += 1
        folder = self.tmp_path / f"example-{self.examples}"
        folder.mkdir()
        url = None
        if self.catalog == "postgres":
            base = postgres_base_url()
            schema = f"model_{secrets.token_hex(6)}"
            self.schemas.append(schema)  # init creates it: the catalog's own schema in the shared database
            url = base
        root = folder / "store"
        store, _ = Store.init(root, database_url=url, database_schema=schema if url else None)
        store.close()
        config = root / "assetfs.toml"
        text = config.read_text()
        assert 'min_age = "1h"' in text, text
        # a mount's own versions replaced within a minute are freed only while no other mount
        # runs (cas/superseded.py, tested on its own in tests/test_superseded.py); the model
        # keeps every acknowledged version, so it turns that off
        assert 'grace = "7d"' in text, text
        config.write_text(text.replace('min_age = "1h"', 'min_age = "0s"')
                          .replace('grace = "7d"', 'grace = "7d"\nfree_superseded = "0s"'))
        return ModelStore(self, root, folder, env)

    def close(self) -> None:
        """Unmount every mount started (killing a daemon that does not end), close the stores,
        drop the schemas."""
        for mount in self.mounts:
            try:
                if mount.process.poll() is None:
                    stop_mount(mount)
                unmount(mount.path)
            except Exception:
                if mount.process.poll() is None:
                    mount.process.kill()
                    mount.process.wait()
                unmount(mount.path)
        self.mounts.clear()
        for store in self.stores:
            store.close()
        self.stores.clear()
        if self.schemas:
            base = postgres_base_url()
            with psycopg.connect(base, autocommit=True) as connection:
                for schema in self.schemas:
                    connection.execute(f"drop schema if exists {schema} cascade")
            self.schemas.clear()


class ModelStore:
    """One example's store with its mounts "A" and "B" and the CLI."""

    def __init__(self, bench: Workbench, root: Path, folder: Path, env: dict[str, str]) -> None:
        self.bench = bench
        self.root = root
        self.folder = folder
        self.env = env
        self.mounts: dict[str, Mount | None] = {}
        self.starts: dict[str, int] = {}
        self.store = Store.open(root)
        self.closed = False
        bench.stores.append(self)

    # mounts --------------------------------------------------------------------------------

    def mountpoint(self, which: str) -> Path:
        return self.folder / f"mnt-{which}"

    def start(self, which: str) -> Mount:
        self.starts[which] = self.starts.get(which, 0) + 1
        log = self.folder / f"mount-{which}-{self.starts[which]}.log"
        mount = start_mount(self.root, self.mountpoint(which), log, env=self.env)
        self.bench.mounts.append(mount)
        self.mounts[which] = mount
        return mount

    def kill(self, which: str) -> None:
        """SIGKILL the daemon, then clear its stale mount."""
        mount = self.mounts[which]
        assert mount is not None
        os.kill(mount.process.pid, signal.SIGKILL)
        mount.process.wait(timeout=30)
        unmount(mount.path)
        assert mounted_at(mount.path) is None
        self.mounts[which] = None

    def stop(self, which: str) -> int:
        mount = self.mounts[which]
        assert mount is not None
        self.mounts[which] = None
        return stop_mount(mount)

    def path(self, which: str, name: str | None = None) -> Path:
        base = self.mountpoint(which) / BUCKET
        return base if name is None else base / name

    def settle(self, which: str) -> None:
        mount = self.mounts[which]
        assert mount is not None
        mount.settle()

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')}"
                         for path in sorted(self.folder.glob("mount-*.log")))

    # the CLI -------------------------------------------------------------------------------

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([ASSETFS, "--store", str(self.root), *args], capture_output=True, timeout=120,
                              env={**os.environ, **self.env})

    def cli_ok(self, *args: str) -> str:
        result = self.cli(*args)
        assert result.returncode == 0, (
            f"assetfs {' '.join(args)} exited {result.returncode}\n"
            f"stdout: {result.stdout.decode(errors='replace')}\nstderr: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode()

    def gc_twice(self) -> list[subprocess.CompletedProcess]:
        """Two `assetfs gc` workers at once."""
        processes = [subprocess.Popen([ASSETFS, "--store", str(self.root), "gc"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env={**os.environ, **self.env}) for _ in range(2)]
        results = []
        for process in processes:
            out, err = process.communicate(timeout=120)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
        return results

    # the catalog ---------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return read_snapshot(self.store)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.store.close()
