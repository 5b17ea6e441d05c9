"""GET/HEAD of object bytes through a real `assetfs serve` over a socket, on both catalogs:
headers, validators, conditional requests, ranges, large bodies, bad ids and names."""

import asyncio
import io
import os
import subprocess
import time
from email.utils import formatdate
from urllib.parse import quote

import httpx
import pytest

from cas import tokens
from serving import add_config, error_code


@pytest.fixture
def served(store_root, server_factory):
    add_config(store_root, "[buckets.pub]\npublic = true")
    from cas.store import Store

    store = Store.open(store_root)
    try:
        _, secret = tokens.create(store.catalog, ["priv", "pub"], True, True, None)
        yield store, server_factory(store_root), {"Authorization": f"Bearer {secret}"}
    finally:
        store.close()


def test_by_id_headers_and_body(served):
    store, server, auth = served
    data = b"hello, assetfs\n" * 100
    put = store.put("priv", io.BytesIO(data), name="docs/h\u00e9llo \"q\".txt")
    response = httpx.get(f"{server.url}/assets/by-id/{put.object.id}", headers=auth)
    assert response.status_code == 200
    assert response.content == data
    headers = response.headers
    assert headers["etag"] == f'"{put.object.hash}"'
    assert headers["content-length"] == str(len(data))
    assert headers["content-type"] == put.object.content_type
    assert headers["accept-ranges"] == "bytes"
    assert headers["last-modified"] == formatdate(int(put.object.created_at), usegmt=True)
    assert headers["cache-control"] == "private, no-cache"
    assert headers["content-disposition"] == (
        "inline; filename=\"h_llo _q_.txt\"; filename*=UTF-8''" + quote("h\u00e9llo \"q\".txt", safe=""))
    assert headers["x-content-type-options"] == "nosniff"
    head = httpx.head(f"{server.url}/assets/by-id/{put.object.id}", headers=auth)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(data)) and head.headers["etag"] == headers["etag"]
    download = httpx.get(f"{server.url}/assets/by-id/{put.object.id}?download=1", headers=auth)
    assert download.headers["content-disposition"].startswith("attachment; ")


def test_by_name_and_cache_control(served):
    store, server, auth = served
    put = store.put("pub", io.BytesIO(b"public bytes"), name="a/b.bin")
    by_id = httpx.get(f"{server.url}/assets/by-id/{put.object.id}")  # no token: the bucket is public
    assert by_id.status_code == 200 and by_id.content == b"public bytes"
    assert by_id.headers["cache-control"] == "public, max-age=31536000, immutable"
    by_name = httpx.get(f"{server.url}/assets/pub/a/b.bin")
    assert by_name.status_code == 200 and by_name.content == b"public bytes"
    assert by_name.headers["cache-control"] == "public, no-cache"  # a name can move: revalidate
    encoded = httpx.get(f"{server.url}/assets/pub/a%2Fb.bin")  # %2F is a '/' of the name
    assert encoded.status_code == 200
    moved = store.put("pub", io.BytesIO(b"new bytes"), name="a/b.bin")
    again = httpx.get(f"{server.url}/assets/pub/a/b.bin", headers={"If-None-Match": by_name.headers["etag"]})
    assert again.status_code == 200 and again.content == b"new bytes"
    assert again.headers["etag"] == f'"{moved.object.hash}"'


def test_conditional_requests(served):
    store, server, auth = served
    put = store.put("priv", io.BytesIO(b"x" * 1000), name="c.bin")
    url = f"{server.url}/assets/by-id/{put.object.id}"
    etag = f'"{put.object.hash}"'
    later = formatdate(time.time() + 3600, usegmt=True)
    earlier = formatdate(put.object.created_at - 3600, usegmt=True)
    cases = [
        ({"If-None-Match": etag}, 304), ({"If-None-Match": f'W/{etag}'}, 304), ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"other"'}, 200), ({"If-None-Match": f'"other", {etag}'}, 304),
        ({"If-Match": etag}, 200), ({"If-Match": '"other"'}, 412), ({"If-Match": f"W/{etag}"}, 412),
        ({"If-Modified-Since": later}, 304), ({"If-Modified-Since": earlier}, 200),
        ({"If-Modified-Since": "not a date"}, 200),
        ({"If-Unmodified-Since": earlier}, 412), ({"If-Unmodified-Since": later}, 200),
        ({"If-None-Match": '"other"', "If-Modified-Since": later}, 200),  # If-None-Match wins
    ]
    for extra, status in cases:
        response = httpx.get(url, headers={**auth, **extra})
        assert response.status_code == status, (extra, response.status_code, response.text)
        if status == 304:
            assert response.content == b"" and response.headers["etag"] == etag
        if status == 412:
            assert error_code(response) == "precondition_failed"


def test_ranges(served):
    store, server, auth = served
    data = bytes(range(256)) * 40  # 10240 bytes
    put = store.put("priv", io.BytesIO(data), name="r.bin")
    url = f"{server.url}/assets/by-id/{put.object.id}"
    etag = f'"{put.object.hash}"'
    for spec, start, end in [("bytes=0-0", 0, 0), ("bytes=100-199", 100, 199), ("bytes=10000-", 10000, 10239),
                             ("bytes=-40", 10200, 10239), ("bytes=10200-99999", 10200, 10239),
                             ("bytes=-99999", 0, 10239)]:
        response = httpx.get(url, headers={**auth, "Range": spec})
        assert response.status_code == 206, spec
        assert response.content == data[start:end + 1], spec
        assert response.headers["content-range"] == f"bytes {start}-{end}/10240"
        assert response.headers["content-length"] == str(end - start + 1)
    for spec, code in [("bytes=10240-", "range_not_satisfiable"), ("bytes=-0", "range_not_satisfiable"),
                       ("bytes=abc", "range_malformed"), ("bytes=5-2", "range_malformed"),
                       ("bytes=-", "range_malformed")]:
        response = httpx.get(url, headers={**auth, "Range": spec})
        assert response.status_code == 416, spec
        assert error_code(response) == code
        assert response.headers["content-range"] == "bytes */10240"
    whole = [("items=0-5", None), ("bytes=0-1,5-6", None), ("bytes=0-1", '"stale"')]
    for spec, if_range in whole:  # unknown unit, several ranges, a stale If-Range: the whole body
        extra = {"Range": spec} if if_range is None else {"Range": spec, "If-Range": if_range}
        response = httpx.get(url, headers={**auth, **extra})
        assert response.status_code == 200 and response.content == data, spec
    fresh = httpx.get(url, headers={**auth, "Range": "bytes=0-1", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == data[:2]


def test_large_bodies_in_chunks(served):
    store, server, auth = served
    data = os.urandom(3 * 1024 * 1024 + 123)  # past SMALL_BODY: read in 1 MiB chunks
    put = store.put("priv", io.BytesIO(data), name="big.bin")
    url = f"{server.url}/assets/by-id/{put.object.id}"
    response = httpx.get(url, headers=auth, timeout=30)
    assert response.status_code == 200 and response.content == data
    middle = httpx.get(url, headers={**auth, "Range": "bytes=1000000-2100000"}, timeout=30)
    assert middle.status_code == 206 and middle.content == data[1000000:2100001]


def test_curl_gets_the_bytes(served, tmp_path):
    store, server, auth = served
    data = os.urandom(700 * 1024)
    put = store.put("pub", io.BytesIO(data), name="curl.bin")
    out = tmp_path / "out.bin"
    result = subprocess.run(["curl", "-sS", "-f", "-o", str(out), "-D", "-", f"{server.url}/assets/pub/curl.bin"],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data
    assert f'etag: "{put.object.hash}"' in result.stdout.decode().lower()
    ranged = subprocess.run(["curl", "-sS", "-r", "5-9", f"{server.url}/assets/by-id/{put.object.id}"],
                            capture_output=True, timeout=60)
    assert ranged.stdout == data[5:10]
    not_modified = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                                   f'If-None-Match: "{put.object.hash}"', f"{server.url}/assets/pub/curl.bin"],
                                  capture_output=True, timeout=60)
    assert not_modified.stdout == b"304"


def test_bad_ids_and_names(served):
    store, server, auth = served
    for bad in ["not-an-id", "0190A1B2-0000-7000-8000-000000000000x", "%00", "%2e%2e", "a%2Fb"]:
        response = httpx.get(f"{server.url}/assets/by-id/{bad}", headers=auth)
        assert response.status_code == 400, bad
        assert error_code(response) == "id_invalid"
    for bad in ["BAD/x", "pub/..%2F..%2Fetc%2Fpasswd", "pub/a%00b", "pub/a//b", "pub/..", "pub/."]:
        response = httpx.get(f"{server.url}/assets/{bad}", headers=auth)
        assert response.status_code in (400, 404), bad
        assert error_code(response) in ("name_invalid", "no_route"), bad
    dotdot = httpx.get(f"{server.url}/assets/pub/a/%2e%2e/%2e%2e/blobs", headers=auth)
    assert dotdot.status_code == 400 and error_code(dotdot) == "name_invalid"


def test_missing_trashed_and_expired_objects_are_404(served):
    store, server, auth = served
    gone = store.put("priv", io.BytesIO(b"trash me"), name="t.bin")
    store.delete(gone.object.id)
    soon = store.put("priv", io.BytesIO(b"short-lived"), expires_at=time.time() + 1.5)
    missing = "01900000-0000-7000-8000-000000000000"
    assert httpx.get(f"{server.url}/assets/by-id/{soon.object.id}", headers=auth).status_code == 200
    time.sleep(1.6)
    for object_id in (gone.object.id, soon.object.id, missing):
        response = httpx.get(f"{server.url}/assets/by-id/{object_id}", headers=auth)
        assert response.status_code == 404 and error_code(response) == "not_found"
    assert error_code(httpx.get(f"{server.url}/assets/priv/t.bin", headers=auth)) == "not_found"
    head = httpx.head(f"{server.url}/assets/by-id/{missing}", headers=auth)
    assert head.status_code == 404 and head.content == b""


def test_unknown_routes_and_methods_are_json(served):
    store, server, auth = served
    assert error_code(httpx.get(f"{server.url}/nope")) == "no_route"
    response = httpx.post(f"{server.url}/assets/by-id/01900000-0000-7000-8000-000000000000")
    assert response.status_code == 405 and error_code(response) == "method_not_allowed"


def test_control_characters_never_reach_headers(served):
    store, server, auth = served
    put = store.put("priv", io.BytesIO(b"odd"), name="odd\r\nX-Injected: 1.txt", content_type="text/plain; a=\rb")
    response = httpx.get(f"{server.url}/assets/by-id/{put.object.id}", headers=auth)
    assert response.status_code == 200 and response.content == b"odd"
    assert "x-injected" not in response.headers
    assert response.headers["content-type"] == "application/octet-stream"
    assert "\r" not in response.headers["content-disposition"] and "%0D%0A" in response.headers["content-disposition"]


def test_concurrent_lookups_each_get_their_object(served):
    """Many GETs by id at once (on PostgreSQL their lookups share queries, serve/pgread.py):
    each gets its own object's bytes, the same id asked twice in a batch answers both, and
    trashed or unknown ids in the same batch are 404s."""
    store, server, _ = served
    live = [store.put("pub", io.BytesIO(f"object {n}".encode()), name=f"c/{n}.txt").object for n in range(40)]
    trashed = store.put("pub", io.BytesIO(b"trashed"), name="c/trashed.txt").object
    store.delete(trashed.id)
    unknown = "01a22a41-0000-7000-8000-000000000000"
    asked = [*(info.id for info in live), *(info.id for info in live[:10]), trashed.id, unknown] * 3

    async def get_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
            return await asyncio.gather(*(client.get(f"/assets/by-id/{object_id}") for object_id in asked))

    expected = {info.id: f"object {n}".encode() for n, info in enumerate(live)}
    for object_id, response in zip(asked, asyncio.run(get_all())):
        if object_id in expected:
            assert response.status_code == 200 and response.content == expected[object_id], object_id
        else:
            assert response.status_code == 401 and error_code(response) == "unauthorized", object_id
