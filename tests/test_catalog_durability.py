"""Transactions committed with `durable=False` (the mount's changes to names): atomic and
visible like any other, the connection back to durable commits afterwards, and `sync`
works on both catalogs."""

import sqlite3
import threading

import pytest

from cas.catalog.sqlite import SqliteCatalog
from cas.store import Store

SYNCHRONOUS_FULL = 2


@pytest.fixture
def store(store: Store) -> Store:
    store.catalog.run(lambda tx: tx.execute("create table notes (name text primary key)"))
    return store


def insert_note(store: Store, name: str, durable: bool) -> None:
    store.catalog.run(lambda tx: tx.execute("insert into notes (name) values (:name)", {"name": name}),
                      durable=durable)


def note_names(store: Store) -> set[str]:
    return {row["name"] for row in store.catalog.run(lambda tx: tx.all("select name from notes"), write=False)}


def test_relaxed_commit_is_visible_to_other_connections_and_synced(store: Store, store_root) -> None:
    insert_note(store, "relaxed", durable=False)
    store.catalog.sync()
    with Store.open(store_root) as other:
        assert "relaxed" in note_names(other)


def test_relaxed_transaction_rolls_back_as_a_whole(store: Store) -> None:
    def half(tx) -> None:
        tx.execute("insert into notes (name) values ('half')")
        raise RuntimeError("stopped halfway")

    with pytest.raises(RuntimeError):
        store.catalog.run(half, durable=False)
    assert "half" not in note_names(store)


def test_sqlite_connection_returns_to_full_sync_even_when_begin_fails(tmp_path) -> None:
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    blocker = sqlite3.connect(tmp_path / "catalog.db", isolation_level=None)
    try:
        blocker.execute("begin immediate")  # holds the write lock: the relaxed BEGIN gives up
        connection = catalog._connection()
        connection.execute("pragma busy_timeout = 50")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            with catalog.transaction(write=True, durable=False):
                pass
        assert connection.execute("pragma synchronous").fetchone()["synchronous"] == SYNCHRONOUS_FULL
        blocker.execute("rollback")
        with catalog.transaction(write=True, durable=False) as tx:
            tx.execute("create table t (x)")
        assert connection.execute("pragma synchronous").fetchone()["synchronous"] == SYNCHRONOUS_FULL
    finally:
        blocker.close()
        catalog.close()


def test_sync_runs_beside_writers(store: Store) -> None:
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            for round_ in range(20):
                insert_note(store, f"w{index}-{round_}", durable=bool(round_ % 2))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(10):
        store.catalog.sync()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len([name for name in note_names(store) if name.startswith("w")]) == 60
