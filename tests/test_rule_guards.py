"""Bucket rules run read-only and with a deadline (issue 11, findings 10 and 15;
docs/concurrency.md, "Rules"): a rule that writes, or never ends, makes its bucket skipped,
and puts go on beside it and after it. On both catalogs.
"""

import fcntl
import io
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from casgc import run_once
from cas.store import Store
from conftest import ASSETFS, run_cli
from gc_helpers import configure
from test_gc import is_live

GC_NOW = '[gc]\nmin_age = "0s"\nrule_timeout = "1s"\n'
# The rule: on PostgreSQL it reset the id sequence of `nodes`, and every later put failed.
SETVAL_RULE = ("select 0 from (select setval(pg_get_serial_sequence('nodes','id'), 1)) s "
               "where cast(:id as text) is not null")
# SQLite has no function that writes; this rule says "referenced" while it could write.
WRITABLE_PROBE = "select 1 from pragma_query_only where query_only = 0 and cast(:id as text) is not null"
ENDLESS_RULE = ("with recursive r(n) as (select 1 union all select n + 1 from r) "
                "select 1 from r where n < 0 and cast(:id as text) is not null")


def test_a_rule_cannot_write(store_root: Path) -> None:
    with Store.open(store_root) as probe:
        dialect = probe.catalog.dialect
    rule = SETVAL_RULE if dialect == "postgres" else WRITABLE_PROBE
    configure(store_root, GC_NOW + f'[buckets.guarded]\nrules = ["{rule}"]\n')
    with Store.open(store_root) as store:
        for number in range(3):
            store.put("named", io.BytesIO(f"named {number}".encode()), name=f"n{number}.txt")
        guarded = store.put("guarded", io.BytesIO(b"guarded")).object

        report = run_once(store)

        if dialect == "postgres":  # setval in a read-only transaction is an error: the bucket is skipped
            assert list(report.skipped_buckets) == ["guarded"]
            assert "read-only" in report.skipped_buckets["guarded"]
            assert is_live(store, guarded.id)
        else:  # the rule ran with query_only on: it found no row, and the object went to the trash
            assert report.skipped_buckets == {}
            assert not is_live(store, guarded.id)
        # the catalog is unchanged by the rule, and writable again: puts make new nodes
        for number in range(3, 6):
            store.put("named", io.BytesIO(f"named {number}".encode()), name=f"n{number}.txt")
        assert len(list(store.list("named"))) == 6


def write_lock_held(store: Store) -> bool:
    """Whether someone holds the SQLite catalog's writer lock (docs/concurrency.md)."""
    fd = os.open(store.catalog.writes.writer_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def rule_running(store: Store) -> bool:
    if store.catalog.dialect == "sqlite":
        return write_lock_held(store)
    return store.catalog.run(lambda tx: tx.value(
        "select count(*) from pg_stat_activity where state = 'active' and query like '%with recursive r(n)%' "
        "and pid <> pg_backend_pid()"), write=False) > 0


def test_a_rule_that_never_ends_times_out_and_writers_go_on(store_root: Path) -> None:
    configure(store_root, GC_NOW.replace('"1s"', '"3s"') + f'[buckets.slow]\nrules = ["{ENDLESS_RULE}"]\n')
    with Store.open(store_root) as store:
        slow = store.put("slow", io.BytesIO(b"slow")).object
        unreferenced = store.put("fine", io.BytesIO(b"nobody wants me")).object
        store.put("uploads", io.BytesIO(b"first upload"))

        collector = subprocess.Popen([ASSETFS, "--store", str(store_root), "gc", "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for _ in range(2000):
                if rule_running(store) or collector.poll() is not None:
                    break
                time.sleep(0.005)
            # a writer while the rule runs: it waits for the rule's deadline at most
            put = run_cli(store_root, "put", "uploads", "-", "--name", "second.txt", input=b"second upload", check=None)
            assert put.returncode == 0, put.stderr.decode()
            out, err = collector.communicate(timeout=60)
        finally:
            if collector.poll() is None:
                collector.kill()
                collector.wait()
                if store.catalog.dialect == "postgres":  # the server would run the rule on and on
                    store.catalog.run(lambda tx: tx.all(
                        "select pg_terminate_backend(pid) from pg_stat_activity "
                        "where query like '%with recursive r(n)%' and pid <> pg_backend_pid()"), write=False)

        assert collector.returncode == 1, err.decode()
        report = json.loads(out.decode().splitlines()[-1])
        assert "within 3s" in report["skipped_buckets"]["slow"]
        assert is_live(store, slow.id)
        assert not is_live(store, unreferenced.id)
        assert [info.names for info in store.list("uploads") if info.names] == [["second.txt"]]
        store.put("uploads", io.BytesIO(b"third upload"), name="third.txt")  # and after it
