"""Mount liveness (docs/concurrency.md, "Mount liveness"): a mount never removes what another
live mount holds — its journal, its staging files, the nodes it keeps for files open in it —
and a dead mount's are recovered (issue 11, findings 4 and 21). Real mounts, both catalogs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

from cas import mounts
from cas.fsck import check_store
from cas.store import Store
from mounting import Mount, check_after_unmount, start_mount, stop_mount

HELD = {"ASSETFS_WRITEBEHIND_GATHER_S": "3600"}  # closed files stay in the journal until fsync


def _rows(store_root: Path, sql: str) -> list[dict]:
    with Store.open(store_root) as store:
        return store.catalog.run(lambda tx: tx.all(sql), write=False)


def _nameless_nodes(store_root: Path) -> list[int]:
    return [row["id"] for row in _rows(
        store_root,
        "select id from nodes n where not exists (select 1 from entries e where e.node_id = n.id) "
        "and not exists (select 1 from buckets b where b.root_node = n.id)")]


def test_a_second_mount_keeps_the_first_mounts_open_unlinked_file(store_root: Path, tmp_path: Path) -> None:
    """Finding 4: a file open in mount A and unlinked there keeps reading (and stat-ing)
    through A after mount B started; once A closed it, nothing is left."""
    a = start_mount(store_root, tmp_path / "a", tmp_path / "a.log")
    b: Mount | None = None
    try:
        (a.path / "photos").mkdir()
        content = os.urandom(200_000)
        (a.path / "photos" / "kept.bin").write_bytes(content)
        a.settle()
        fd = os.open(a.path / "photos" / "kept.bin", os.O_RDONLY)
        try:
            os.unlink(a.path / "photos" / "kept.bin")
            assert len(_nameless_nodes(store_root)) == 1
            b = start_mount(store_root, tmp_path / "b", tmp_path / "b.log")
            assert len(_nameless_nodes(store_root)) == 1, "mount B deleted the node mount A holds open"
            time.sleep(1.2)  # past the attribute timeout: fstat asks mount A, which asks the catalog
            assert os.fstat(fd).st_size == len(content)
            assert os.pread(fd, len(content) + 1, 0) == content
        finally:
            os.close(fd)
        deadline = time.monotonic() + 20  # the kernel forgets the inode soon after the last close
        while _nameless_nodes(store_root) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _nameless_nodes(store_root) == [], "mount A did not delete the node once the file was closed"
        assert _rows(store_root, "select node_id from mount_nodes") == []
        assert stop_mount(b) == 0 and " ERROR " not in b.log_text(), b.log_text()
        b = None
    finally:
        if b is not None:
            stop_mount(b)
        code_a = stop_mount(a)
    check_after_unmount(a, code_a)
    assert _nameless_nodes(store_root) == []
    assert _rows(store_root, "select node_id from mount_nodes") == []
    assert _rows(store_root, "select id from mounts") == []


def test_recovery_leaves_a_live_mounts_journal_and_takes_a_dead_ones(store_root: Path, tmp_path: Path) -> None:
    """Finding 21's rule on one machine: `fsck --repair` (and a starting mount) recover only a
    mount whose liveness lock is free; a live one's journal entries and staging stay. A dead
    one's are committed, and the node it kept for a file open and unlinked in it is deleted."""
    a = start_mount(store_root, tmp_path / "a", tmp_path / "a.log", env=HELD)
    held = -1
    try:
        (a.path / "photos").mkdir()
        (a.path / "photos" / "z.txt").write_bytes(b"open and unlinked at the kill")
        with open(a.path / "photos" / "z.txt", "rb") as reader:
            os.fsync(reader.fileno())
        held = os.open(a.path / "photos" / "z.txt", os.O_RDONLY)
        os.unlink(a.path / "photos" / "z.txt")
        assert len(_nameless_nodes(store_root)) == 1
        (a.path / "photos" / "x.txt").write_bytes(b"closed, not committed")
        writer = open(a.path / "photos" / "y.txt", "wb")  # open: its staging file is A's
        writer.write(b"still being written")
        writer.flush()
        [journal] = (store_root / "tmp").glob("closed-*")
        before = sorted(entry.name for entry in journal.iterdir())
        assert before, "the closed file is in A's journal"
        with Store.open(store_root) as store:
            report = check_store(store, repair=True, orphan_grace=0.0)
            [row] = mounts.registered(store)
        assert [p for p in report.problems if p.kind in ("uncommitted_closed", "orphan_staging")] == []
        assert journal.is_dir() and sorted(entry.name for entry in journal.iterdir()) == before
        assert row.pid == a.process.pid
        writer.write(b", and more")
        writer.close()
        assert (a.path / "photos" / "y.txt").read_bytes() == b"still being written, and more"
        a.process.send_signal(signal.SIGKILL)  # dead now: its lock is free
        a.process.wait(timeout=30)
    finally:
        if held >= 0:
            try:
                os.close(held)
            except OSError:  # ENOTCONN: the daemon was killed
                pass
        stop_mount(a)
    with Store.open(store_root) as store:
        report = check_store(store, repair=True)
        assert [p.kind for p in report.problems] == ["uncommitted_closed"]
        assert all(p.repaired for p in report.problems)
        assert mounts.registered(store) == []
        named = {name for info in store.list("photos") for name in info.names}
    assert named == {"x.txt", "y.txt"}
    assert _nameless_nodes(store_root) == [], "the dead mount's kept node was not deleted"
    assert _rows(store_root, "select node_id from mount_nodes") == []
    assert list((store_root / "tmp").iterdir()) == []


def test_a_registered_mount_is_alive_while_it_holds_its_lock(store: Store) -> None:
    live = mounts.LiveMount.register(store)
    try:
        [row] = mounts.registered(store)
        assert row.id == live.id and row.pid == os.getpid()
        assert mounts.try_lock(store, live.id) is None, "a live mount's lock was taken"
        if store.catalog.dialect == "sqlite":
            assert mounts.lock_path(store, live.id).stat().st_mode & 0o777 == 0o600
        time.sleep(0.01)
        live.beat()
        assert mounts.registered(store)[0].heartbeat > row.heartbeat
    finally:
        live.end(forget=True)
    assert mounts.registered(store) == []
    assert list(store.tree.tmp.iterdir()) == []


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_mount_whose_catalog_session_ended_is_dead(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL: the advisory lock lives with the mount's session; when the session is gone
    (the process died, or the server dropped it) any machine can take it."""
    live = mounts.LiveMount.register(store)
    try:
        backend = live.lock.connection.info.backend_pid
        with psycopg.connect(store.catalog.url, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s, 10000)", (backend,))
        taken = mounts.try_lock(store, live.id)
        assert taken is not None, "the lock of an ended session could not be taken"
        live.beat()  # held by `taken`, as a recoverer would
        assert "held by another process" in caplog.text
        taken.release()
        live.beat()  # no one recovered it: the mount takes its lock again
        assert mounts.try_lock(store, live.id) is None
    finally:
        live.end(forget=True)
    assert mounts.registered(store) == []
