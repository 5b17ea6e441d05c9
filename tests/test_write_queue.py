"""The SQLite catalog's write queue (docs/concurrency.md, "Waiting for the write lock"): a
writer that waits for the collector gets the lock when the collector's batch ends, before
the collector's next batch; and writers that never stop waiting cannot stall the collector.

SQLite only: a PostgreSQL catalog has no single write lock to queue for.
"""

import fcntl
import io
import os
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from casgc import batches, run_once
from cas.catalog import writequeue
from cas.store import Store
from gc_helpers import configure

ROWS = 6


@pytest.fixture
def sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    # no timing in these tests: a batch yields as soon as a writer waits, and yielding has no limit
    monkeypatch.setattr(batches, "YIELD_AFTER", 0.0)
    monkeypatch.setattr(writequeue, "YIELD_LIMIT", 3600.0)
    store, _ = Store.init(tmp_path / "store")
    store.close()
    configure(store.root, '[gc]\nmin_age = "0s"\nbatch_size = 100\n\n'
                          '[buckets.photos]\nrules = ["select gc_pause(:id)"]\n')
    with Store.open(store.root) as opened:
        yield opened


def uploads_committed(store: Store) -> int:
    """Objects of the bucket `uploads` that a new reader sees: those committed so far."""
    with sqlite3.connect(store.catalog.path) as connection:
        return connection.execute("select count(*) from objects where bucket = 'uploads'").fetchone()[0]


def test_a_put_waiting_for_the_collector_goes_between_two_of_its_batches(sqlite_store: Store) -> None:
    store = sqlite_store
    for number in range(ROWS):
        store.put("photos", io.BytesIO(f"photo {number}".encode()))
    store.put("uploads", io.BytesIO(b"first upload"))  # the bucket exists: the next put is one transaction
    seen: list[int] = []  # per photo the collector checks: uploads committed at that moment
    with ThreadPoolExecutor(1) as putter:
        second_put: list[Future] = []

        def pause(object_id: str) -> int:
            """The photos rule, run by the collector inside its batch: on the first row, start
            a put and go on once it waits for the write lock."""
            if not seen:
                second_put.append(putter.submit(store.put, "uploads", io.BytesIO(b"second upload")))
                while not store.catalog.writes.others_waiting():
                    time.sleep(0.001)
            seen.append(uploads_committed(store))
            return 0  # not referenced

        # the connection of this thread that the collector's batches use
        store.catalog._connection(background=True).create_function("gc_pause", 1, pause)
        batch_ends: list[int] = []
        report = run_once(store, progress=lambda name, examined: batch_ends.append(examined) if name == "touched" else None)
        second_put[0].result()

    assert seen == [1] + [2] * (ROWS - 1)  # the put committed after the first photo, before the second
    assert batch_ends[0] == 1  # the batch ended after the first photo, for the put
    assert batch_ends[-1] == ROWS + 1  # the photos and the first upload, the one older than the run
    assert report.get("touched").counts["trashed"] == ROWS + 1
    assert uploads_committed(store) == 2


def test_writers_that_never_stop_waiting_do_not_stall_the_collector(tmp_path: Path) -> None:
    with Store.init(tmp_path / "store")[0] as store:
        store.delete(store.put("photos", io.BytesIO(b"photo")).object.id)
        waiting = os.open(store.catalog.writes.waiting_path, os.O_RDONLY)
        try:
            fcntl.flock(waiting, fcntl.LOCK_SH)  # a writer that is always waiting
            report = run_once(store, now=time.time() + 30 * 86400)
        finally:
            os.close(waiting)
        assert report.get("purge").counts["purged"] == 1
        assert report.get("sweep").counts["swept"] == 1
