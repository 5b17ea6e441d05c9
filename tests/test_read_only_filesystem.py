"""A store on a read-only filesystem (a snapshot, a backup mounted `ro`, a replica) can be
read (issue 8, point 15; docs/upgrade.md, "Read commands write nothing"): every read command,
`dump --pause-sweep 0`, `migrate --dry-run` and a read-only mount. SQLite's WAL needs its
`-shm` even to read; the catalog is opened `immutable` when no `-wal` is left, read-only
through the `-wal` and `-shm` a writer left otherwise. The test mounts a small tmpfs, makes
the store on it, remounts it `ro`, and unmounts it afterwards."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cas.store import Store
from conftest import run_cli
from helpers import small_tmpfs
from mounting import start_mount, stop_mount
from test_upgrade import tree_state

READS = (["ls"], ["ls", "photos/"], ["stat", "photos/a.txt"], ["cat", "{id}"], ["get", "{id}", "-o", "-"],
         ["hold", "ls"], ["trash", "ls"], ["stats"], ["fsck"], ["fsck", "--verify-content"], ["gc", "--dry-run"],
         ["migrate", "--dry-run"], ["dump", "--pause-sweep", "0"])


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(folder)], check=True, timeout=30)


def check_reads(root: Path, object_id: str, tmp_path: Path) -> None:
    before = tree_state(root)
    for args in READS:
        result = run_cli(root, *[part.format(id=object_id) for part in args])
        if args[0] == "dump":
            lines = result.stdout.decode().splitlines()
            assert "end" in json.loads(lines[-1]) and any(object_id in line for line in lines)
        if args[0] == "cat":
            assert result.stdout == b"shown"
    mount = start_mount(root, tmp_path / "mnt", tmp_path / "mount.log", "--read-only")
    try:
        assert (mount.path / "photos" / "a.txt").read_bytes() == b"shown"
    finally:
        assert stop_mount(mount) == 0, mount.log_text()
    assert tree_state(root) == before


def test_a_store_on_a_read_only_filesystem_can_be_read(tmp_path: Path, database_url: str | None) -> None:
    with small_tmpfs(tmp_path / "fs", "64m") as folder:
        root = folder / "store"
        Store.init(root, database_url=database_url)[0].close()
        object_id = run_cli(root, "put", "photos", "-", "--name", "a.txt", input=b"shown").stdout.decode().split()[0]
        with read_only(folder):
            check_reads(root, object_id, tmp_path)


KILLED_WRITER = """
import io, os, sys
from cas.store import Store
store = Store.open(sys.argv[1])
store.catalog.run(lambda tx: tx.execute("pragma wal_autocheckpoint = 0"))
print(store.put("photos", io.BytesIO(b"shown"), name="a.txt").object.id, flush=True)
os.kill(os.getpid(), 9)  # killed with the catalog open: its -wal and -shm stay, the commit only in the -wal
"""


def test_a_sqlite_store_whose_writer_left_its_wal_can_be_read(tmp_path: Path) -> None:
    """A snapshot taken while a writer ran has the last commits in catalog.db-wal only."""
    with small_tmpfs(tmp_path / "fs", "64m") as folder:
        root = folder / "store"
        Store.init(root)[0].close()
        writer = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(root)], capture_output=True, timeout=60)
        assert writer.returncode == -signal.SIGKILL, writer.stderr.decode()
        object_id = writer.stdout.decode().strip()
        assert (root / "catalog.db-wal").stat().st_size > 0 and (root / "catalog.db-shm").exists()
        with read_only(folder):
            check_reads(root, object_id, tmp_path)


def test_a_wal_without_its_shm_on_a_read_only_filesystem_is_one_line(tmp_path: Path) -> None:
    """SQLite cannot read the commits in a -wal without its -shm, nor make one there: said in
    one line (exit 1), with what to do, and nothing is read from the database alone."""
    with small_tmpfs(tmp_path / "fs", "64m") as folder:
        root = folder / "store"
        Store.init(root)[0].close()
        writer = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(root)], capture_output=True, timeout=60)
        assert writer.returncode == -signal.SIGKILL, writer.stderr.decode()
        (root / "catalog.db-shm").unlink()  # a copy that left it out
        with read_only(folder):
            before = tree_state(root)
            for args in (["ls"], ["dump", "--pause-sweep", "0"]):
                result = run_cli(root, *args, check=1)
                line = result.stderr.decode()
                assert line.count("\n") == 1 and "catalog.db-shm" in line and "owner" in line, line
                assert result.stdout == b""
            assert tree_state(root) == before

