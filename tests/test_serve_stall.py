"""A slow catalog query never stalls other requests: with the objects table locked on
PostgreSQL, a by-id GET waits (on the async pool) while /healthz and a signed-URL check are
still answered; when the lock goes, the GET completes. With every catalog thread waiting, a
lookup by id is still answered."""

import concurrent.futures
import io

import httpx
import psycopg
import pytest

from cas import tokens
from cas.store import Store
from serving import add_config
from serve.service import CATALOG_THREADS


def test_a_blocked_lookup_stalls_nothing_else(database_url, store_root, server_factory):
    if database_url is None:
        pytest.skip("SQLite readers never wait for a lock (WAL): no way to make a lookup block")
    with Store.open(store_root) as store:
        info = store.put("b", io.BytesIO(b"content"), name="x.bin").object
        _, secret = tokens.create(store.catalog, ["b"], True, False, None)
    server = server_factory(store_root)
    auth = {"Authorization": f"Bearer {secret}"}
    with psycopg.connect(database_url) as locker, concurrent.futures.ThreadPoolExecutor(1) as pool:
        locker.execute("lock table assetfs.objects in access exclusive mode")  # held until the transaction ends
        blocked = pool.submit(httpx.get, f"{server.url}/assets/by-id/{info.id}", headers=auth, timeout=60)
        for _ in range(20):
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        bad = httpx.get(f"{server.url}/assets/by-id/not-an-id", timeout=5)
        assert bad.status_code == 400
        assert not blocked.done()  # still waiting for the lock, while the others were answered
        locker.rollback()
        response = blocked.result(60)
    assert response.status_code == 200 and response.content == b"content"


def test_lookups_by_id_need_no_catalog_thread(database_url, store_root, server_factory):
    """With every catalog thread held by a token check waiting on a locked table, a public
    by-id GET is still answered: its lookup runs on the event loop (SQLite's read_now,
    PostgreSQL's async pool), not in those threads."""
    if database_url is None:
        pytest.skip("SQLite readers never wait for a lock (WAL): no way to hold the catalog threads")
    add_config(store_root, "[buckets.pub]\npublic = true")
    with Store.open(store_root) as store:
        info = store.put("pub", io.BytesIO(b"public"), name="p.bin").object
        _, secret = tokens.create(store.catalog, ["pub"], True, False, None)
    server = server_factory(store_root)
    auth = {"Authorization": f"Bearer {secret}"}
    waiting = CATALOG_THREADS + 4
    with psycopg.connect(database_url) as locker, concurrent.futures.ThreadPoolExecutor(waiting) as pool:
        locker.execute("lock table assetfs.tokens in access exclusive mode")
        held = [pool.submit(httpx.get, f"{server.url}/assets/by-id/{info.id}", headers=auth, timeout=60)
                for _ in range(waiting)]
        response = httpx.get(f"{server.url}/assets/by-id/{info.id}", timeout=10)
        assert response.status_code == 200 and response.content == b"public"
        assert not any(request.done() for request in held)  # the token checks still wait
        locker.rollback()
        assert all(request.result(60).status_code == 200 for request in held)
