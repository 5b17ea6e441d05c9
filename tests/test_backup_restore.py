"""The backup and restore procedure of docs/backup.md, end to end, with real rsync: the
catalog dump, then the blob tree, while puts and the collector run; a restore into another
folder (another catalog); fsck clean, every object of the dump readable, names and holds
equal. Objects of the dump that the collector purges between the dump and the copy keep
their blobs thanks to the dump's sweep pause; without one they are lost (the control)."""

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import blake3
import pytest

from cas import sweeppause
from cas.store import Store
from tests.conftest import ASSETFS, fresh_database, run_cli



@pytest.fixture
def fresh_catalog(database_url: str | None) -> Iterator:
    """Makes an empty catalog of the same kind as the store's: None (SQLite in the restored
    folder) or a fresh PostgreSQL database, dropped afterwards."""
    with ExitStack() as made:
        def make() -> str | None:
            return None if database_url is None else made.enter_context(fresh_database())

        yield make


class Traffic:
    """Puts and collector runs, through the CLI, until stopped (what a store in use sees)."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root, self.scratch = root, scratch
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.puts = 0
        self.threads = [threading.Thread(target=self._put), threading.Thread(target=self._collect)]

    def _run(self, *args: str) -> None:
        result = subprocess.run([ASSETFS, "--store", str(self.root), *args], capture_output=True, timeout=60)
        if result.returncode not in (0, 75):  # 75: the write lock was busy, try again
            self.failures.append(f"{args[0]}: {result.stderr.decode()}")

    def _put(self) -> None:
        while not self.stop.is_set():
            source = self.scratch / f"during-{self.puts}.bin"
            source.write_bytes(f"written during the backup {self.puts}".encode())
            self._run("put", "live", str(source), "--name", f"during/{self.puts}.bin")
            self.puts += 1

    def _collect(self) -> None:
        while not self.stop.is_set():
            self._run("gc")

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)


def prepare(store_root: Path, tmp_path: Path) -> dict[str, bytes]:
    """A store in use: named objects, holds, and objects in the trash of `scratch` (their
    grace ends during the backup: `back_up`)."""
    contents = {}
    with Store.open(store_root) as store:
        for index in range(10):
            source = tmp_path / f"before-{index}.bin"
            source.write_bytes(f"stored before the backup {index} ".encode() * 300)
            bucket = "scratch" if index < 4 else "live"
            result = store.put(bucket, source, name=f"before/{index}.bin")
            contents[result.object.id] = source.read_bytes()
            if index < 4:
                store.delete(result.object.id)  # purged by the collector during the backup
            elif index % 2:
                store.hold(result.object.id, "app")
    return contents


def back_up(store_root: Path, backup: Path, pause: str) -> list[dict]:
    """docs/backup.md, steps 1–3: dump (with its sweep pause), copy the blob tree, resume."""
    backup.mkdir()
    dump_file = backup / "catalog.jsonl"
    dumped = run_cli(store_root, "dump", "-o", str(dump_file), "--pause-sweep", pause)
    with Store.open(store_root) as store:  # the grace of the dumped trash ends before the copy
        store.catalog.run(lambda tx: tx.execute("update objects set purge_after = :now where bucket = 'scratch'",
                                                {"now": time.time()}))
    run_cli(store_root, "gc")  # the collector purges it (and would sweep its blobs)
    copy = subprocess.run(["rsync", "-aH", f"{store_root}/blobs", f"{store_root}/objects",
                           f"{store_root}/assetfs.toml", f"{backup}/"], capture_output=True, timeout=120)
    assert copy.returncode in (0, 24), copy.stderr  # 24: files vanished meanwhile (purged), as expected
    if pause != "0":
        pause_id = dumped.stderr.decode().split("--resume-sweep ")[1].split("'")[0]
        run_cli(store_root, "dump", "--resume-sweep", pause_id)
    return [json.loads(line) for line in dump_file.read_text().splitlines()]


def restore(backup: Path, target: Path, database_url: str | None) -> None:
    """docs/backup.md, "Restore": a new store, the catalog loaded, the blob tree copied in,
    its settings taken over, fsck --repair once."""
    init = ["init"] + (["--database-url", database_url] if database_url else [])
    run_cli(target, *init)
    config = (backup / "assetfs.toml").read_text().splitlines()
    config = [line for line in config if not line.startswith("database_url")]
    if database_url:
        config.insert(1, f"database_url = {json.dumps(database_url)}")
    (target / "assetfs.toml").write_text("\n".join(config) + "\n")
    run_cli(target, "load", str(backup / "catalog.jsonl"))
    copy = subprocess.run(["rsync", "-aH", f"{backup}/blobs", f"{backup}/objects", f"{target}/"],
                          capture_output=True, timeout=120)
    assert copy.returncode == 0, copy.stderr


def test_backup_while_puts_and_gc_run_restores_every_object(store_root: Path, tmp_path: Path, fresh_catalog) -> None:
    contents = prepare(store_root, tmp_path)
    held_before = run_cli(store_root, "hold", "ls", "--json").stdout
    scratch = tmp_path / "during"
    scratch.mkdir()
    with Traffic(store_root, scratch) as traffic:
        dump = back_up(store_root, tmp_path / "backup", pause="6h")
    assert traffic.failures == [] and traffic.puts > 0
    with Store.open(store_root) as store:  # the collector did purge objects of the dump meanwhile
        trashed = store.catalog.run(lambda tx: tx.value("select count(*) as n from objects where bucket = 'scratch'"),
                                    write=False)
    assert trashed == 0

    target = tmp_path / "restored"
    restore(tmp_path / "backup", target, fresh_catalog())
    run_cli(target, "fsck", "--repair", "--orphan-grace", "0s", check=None)
    run_cli(target, "fsck", "--verify-content")  # clean: exit 0
    rows = [line["row"] for line in dump if line.get("table") == "objects"]
    assert {row["id"] for row in rows} >= set(contents)  # and what the puts stored before the snapshot
    with Store.open(target) as restored:
        for row in rows:
            alias = restored.tree.alias_path(row["bucket"], row["id"], row["filename"])
            assert blake3.blake3(alias.read_bytes()).hexdigest() == row["hash"]
            if row["id"] in contents:
                assert alias.read_bytes() == contents[row["id"]]
            if row["deleted_at"] is None:
                assert restored.open_object(row["id"]).read() == alias.read_bytes()
    assert run_cli(target, "hold", "ls", "--json").stdout == held_before
    names = run_cli(target, "ls", "live/before/", "--json").stdout.decode().splitlines()
    assert sorted(json.loads(line)["name"] for line in names) == [f"before/{index}.bin" for index in range(4, 10)]
    assert run_cli(target, "trash", "ls", "scratch").stdout.decode().count("\n") == 4


def test_without_a_sweep_pause_the_backup_loses_the_purged_objects(store_root: Path, tmp_path: Path,
                                                                    fresh_catalog) -> None:
    """The control: the same backup with `--pause-sweep 0` misses the blobs the collector
    unlinked between the dump and the copy."""
    prepare(store_root, tmp_path)
    back_up(store_root, tmp_path / "backup", pause="0")
    target = tmp_path / "restored"
    restore(tmp_path / "backup", target, fresh_catalog())
    found = run_cli(target, "fsck", "--repair", "--orphan-grace", "0s", "--json", check=1).stdout.decode()
    assert found.count('"kind": "missing_blob"') == 4


def test_a_pause_stops_the_sweep_until_it_ends_or_is_resumed(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "b.bin"
    source.write_bytes(b"unused soon")
    other = store.put("docs", source).object
    pause = sweeppause.start(store.catalog, 3600)
    store.delete(other.id)
    out = run_cli(store.root, "trash", "purge", "--all").stdout.decode()
    assert "sweep: 0 examined" in out and "paused by a backup's dump until" in out
    assert store.tree.blob_path(other.hash).exists()
    run_cli(store.root, "dump", "--resume-sweep", pause.id)
    run_cli(store.root, "gc")
    assert not store.tree.blob_path(other.hash).exists()

    ran_out = sweeppause.start(store.catalog, 0.001)
    time.sleep(0.01)
    message = run_cli(store.root, "dump", "--resume-sweep", ran_out.id, check=1).stderr.decode()
    assert "ran out before this" in message and message.count("\n") == 1
    assert run_cli(store.root, "dump", "--resume-sweep", "nosuchpause", check=1).stderr.decode().count("\n") == 1
