"""`Catalog.read_now`: a small read answered at once or not at all (the HTTP server's lookup
by id runs it on its event loop, docs/http.md). SQLite answers from its file and stops a
statement that runs too long; PostgreSQL always says it would wait (a network round trip)."""

import io
import sqlite3

import pytest

from cas.catalog.base import WouldWait

LIVE = "select * from objects where id = :id and deleted_at is null"
LONG = "with recursive c(x) as (select 1 union all select x + 1 from c where x < 1000000) select count(*) as n from c"


def test_read_now(store):
    kept = store.put("b", io.BytesIO(b"kept"), name="kept.bin").object
    trashed = store.put("b", io.BytesIO(b"trashed"), name="trashed.bin").object
    store.delete(trashed.id)
    if store.catalog.dialect == "postgres":
        with pytest.raises(WouldWait):
            store.catalog.read_now(LIVE, {"id": kept.id})
        return
    assert [row["id"] for row in store.catalog.read_now(LIVE, {"id": kept.id})] == [kept.id]
    assert store.catalog.read_now(LIVE, {"id": trashed.id}) == []
    with pytest.raises(WouldWait):  # a million steps: stopped, not waited for
        store.catalog.read_now(LONG, {})
    with pytest.raises(sqlite3.OperationalError):  # it only reads
        store.catalog.read_now("delete from objects", {})
    assert [row["id"] for row in store.catalog.read_now(LIVE, {"id": kept.id})] == [kept.id]  # still usable
    with store.catalog.transaction() as tx:
        assert tx.value("select count(*) from objects") == 2


def test_read_now_bounds_each_statement(store):
    """The step bound is per statement: a short lookup run again and again (the same cached
    statement, its step count growing past the bound) is never stopped."""
    kept = store.put("b", io.BytesIO(b"kept"), name="kept.bin").object
    if store.catalog.dialect == "postgres":
        with pytest.raises(WouldWait):
            store.catalog.read_now(LIVE, {"id": kept.id})
        return
    for _ in range(1000):  # ~100 steps each: 10 times the bound in all
        assert len(store.catalog.read_now(LIVE, {"id": kept.id})) == 1
    with pytest.raises(WouldWait):
        store.catalog.read_now(LONG, {})
