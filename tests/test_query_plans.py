"""A put reads only what it needs: every statement it runs on the SQLite catalog searches an
index, none walks a table or a whole bucket.

SQLite keeps no statistics unless ANALYZE runs, and without them its planner may prefer an
index that gives a query's ORDER BY over one that matches its filter: put's dedup lookup
once read every object of the bucket through `(bucket, id)`, so a put took longer the more
objects its bucket held. PostgreSQL plans from statistics and is not checked here.
"""

import io
import re
import sqlite3
from pathlib import Path

from cas.store import Store

BIG_TABLES = ("objects", "nodes", "entries", "blobs", "holds")
WALK = re.compile(rf"^SCAN ({'|'.join(BIG_TABLES)})\b|USING (COVERING )?INDEX objects_bucket_id\b")


def statements_of(connection: sqlite3.Connection, action) -> list[str]:
    """The statements (with their values) that `action` runs on `connection`."""
    seen: list[str] = []
    connection.set_trace_callback(seen.append)
    try:
        action()
    finally:
        connection.set_trace_callback(None)
    return [sql for sql in seen if sql.split()[0].lower() in ("select", "insert", "update", "delete", "with")]


def walks(connection: sqlite3.Connection, sql: str) -> list[str]:
    return [row["detail"] for row in connection.execute("explain query plan " + sql) if WALK.search(row["detail"])]


def test_puts_search_indexes_only(tmp_path: Path) -> None:
    store, _ = Store.init(tmp_path / "store")
    with store:
        for number in range(200):  # a bucket worth walking, with names
            store.put("b", io.BytesIO(b"object %d" % number), name=f"dir/{number}")
        connection = store.catalog._connection()

        def puts() -> None:
            store.put("b", io.BytesIO(b"new content"))  # no object with it yet
            store.put("b", io.BytesIO(b"new content"))  # deduplicated onto the first
            store.put("b", io.BytesIO(b"object 7"), name="dir/other")  # named, deduplicated
            store.put("b", io.BytesIO(b"replacing"), name="dir/8")  # replaces a name

        statements = statements_of(connection, puts)
        assert any("from objects where bucket" in sql for sql in statements)  # the dedup lookup was seen
        found = {sql: walked for sql in statements if (walked := walks(connection, sql))}
        assert found == {}
