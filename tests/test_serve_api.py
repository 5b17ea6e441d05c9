"""The /v1 JSON API of a real `assetfs serve`, on both catalogs: uploads (raw and multipart,
streamed, checked), metadata, listing, names, delete/restore, holds; every bad input gets
its status and JSON code and changes nothing."""

import base64
import hashlib
import io
import json
import os
import re
import socket
import time

import blake3
import httpx
import pytest

from cas import tokens
from cas.store import Store
from helpers import snapshot, tmp_entries
from serving import add_config, error_code

MISSING = "01900000-0000-7000-8000-000000000000"


@pytest.fixture
def api(store_root, server_factory):
    add_config(store_root, "[buckets.small]\nmax_size = 1000\n\n[buckets.pub]\npublic = true")
    store = Store.open(store_root)
    try:
        _, secret = tokens.create(store.catalog, ["priv", "small", "pub"], True, True, None)
        server = server_factory(store_root)
        yield store, server, httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"},
                                          timeout=30)
    finally:
        store.close()


def wait_for_log(server, needle: str, count: int = 1) -> None:
    """Wait until the server's access log has `count` lines with `needle` (its requests ended)."""
    deadline = time.monotonic() + 20
    while server.log_text().count(needle) < count:
        assert time.monotonic() < deadline, f"no {needle!r} in the log:\n{server.log_text()}"
        time.sleep(0.05)


def read_answer(raw: socket.socket) -> str:
    """One HTTP response from a raw socket: the head, then as many bytes as its Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = raw.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(body) < length:
        chunk = raw.recv(65536)
        assert chunk, data
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()


def test_raw_upload_then_dedup(api):
    store, server, client = api
    data = os.urandom(5 * 1024 * 1024 + 7)  # several pulls of the body
    response = client.post("/v1/buckets/priv/objects", content=data,
                           params={"name": "up/one.bin", "meta.owner": "alice", "expires_in": "7d"},
                           headers={"Content-Type": "application/x-thing"})
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["hash"] == blake3.blake3(data).hexdigest() and record["size"] == len(data)
    assert record["name"] == "up/one.bin" and record["deduplicated"] is False
    assert record["content_type"] == "application/x-thing" and record["url"] == f"/assets/by-id/{record['id']}"
    info = store.get(record["id"])
    assert info.metadata == {"owner": "alice"} and info.expires_at is not None and info.names == ["up/one.bin"]
    with store.open_object(record["id"]) as stored:
        assert stored.read() == data
    again = client.post("/v1/buckets/priv/objects", content=data, params={"expires_in": "1d"})
    assert again.status_code == 200 and again.json()["deduplicated"] is True and again.json()["id"] == record["id"]
    assert tmp_entries(store) == []


def test_upload_options_in_headers_and_chunked_body(api):
    store, server, client = api
    chunks = [b"a" * 70000, b"b" * 70000, b"c"]
    response = client.post("/v1/buckets/priv/objects", content=iter(chunks),
                           headers={"X-Assetfs-Name": "h/\u00e9t\u00e9.txt".encode(), "X-Assetfs-Meta-Colour": "red"})
    assert response.status_code == 201, response.text
    info = store.get(response.json()["id"])
    assert info.names == ["h/\u00e9t\u00e9.txt"] and info.metadata == {"colour": "red"} and info.size == 140001


def test_multipart_upload(api):
    store, server, client = api
    data = os.urandom(300000)
    response = client.post("/v1/buckets/priv/objects", data={"name": "form/pic.png", "meta.k": "v"},
                           files={"file": ("C:\\Users\\me\\pic.png", data, "image/png")})
    assert response.status_code == 201, response.text
    info = store.get(response.json()["id"])
    assert info.names == ["form/pic.png"] and info.filename == "pic.png" and info.content_type == "image/png"
    assert info.metadata == {"k": "v"}
    with store.open_object(info.id) as stored:
        assert stored.read() == data
    unnamed = client.post("/v1/buckets/priv/objects", files={"file": ("notes.txt", b"some notes", "text/plain")})
    assert unnamed.status_code == 201 and store.get(unnamed.json()["id"]).filename == "notes.txt"
    assert unnamed.json()["name"] is None


def test_bad_multipart_stores_nothing(api):
    store, server, client = api
    before = snapshot(store)
    boundary = "XyZ"
    field_after = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n"
                   f"data\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nlate.txt\r\n"
                   f"--{boundary}--\r\n").encode()
    no_file = f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nx\r\n--{boundary}--\r\n".encode()
    for body, code in [(field_after, "multipart_order"), (no_file, "file_missing")]:
        response = client.post("/v1/buckets/priv/objects", content=body,
                               headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert response.status_code == 400 and error_code(response) == code
    response = client.post("/v1/buckets/priv/objects", content=b"x", headers={"Content-Type": "multipart/form-data"})
    assert error_code(response) == "multipart_invalid"
    assert snapshot(store) == before


def test_digest_checks(api):
    store, server, client = api
    data = b"checked content"
    good = base64.b64encode(hashlib.sha256(data).digest()).decode()
    ok = client.post("/v1/buckets/priv/objects", content=data, headers={"Content-Digest": f"sha-256=:{good}:"})
    assert ok.status_code == 201
    b3 = base64.b64encode(blake3.blake3(b"other").digest()).decode()
    before = snapshot(store)
    for header, code in [(f"sha-256=:{base64.b64encode(hashlib.sha256(b'x').digest()).decode()}:", "digest_mismatch"),
                         (f"blake3=:{b3}:", "digest_mismatch"), ("md5=:AAAA:", "digest_unsupported"),
                         ("sha-256=nonsense", "digest_invalid"), ("sha-256=:!!!:", "digest_invalid")]:
        response = client.post("/v1/buckets/priv/objects", content=b"new content " + header.encode(),
                               headers={"Content-Digest": header})
        assert response.status_code == 400, header
        assert error_code(response) == code, header
    assert snapshot(store) == before


def test_truncated_body_stores_nothing(api):
    store, server, client = api
    before = snapshot(store)
    host, port = server.url.removeprefix("http://").split(":")
    token = client.headers["authorization"]
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(f"POST /v1/buckets/priv/objects?name=cut.bin HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
                    "Content-Length: 100000\r\n\r\n".encode() + os.urandom(60000))
        raw.shutdown(socket.SHUT_WR)  # the client goes away after 60,000 of 100,000 bytes
    wait_for_log(server, "POST /v1/buckets/priv/objects 400")
    assert snapshot(store) == before
    assert tmp_entries(store) == []


def test_max_size(api):
    store, server, client = api
    before = snapshot(store)
    host, port = server.url.removeprefix("http://").split(":")
    token = client.headers["authorization"]
    with socket.create_connection((host, int(port)), timeout=10) as raw:  # 413 before any body byte is sent
        raw.sendall(f"POST /v1/buckets/small/objects HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
                    "Content-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n".encode())
        answer = read_answer(raw)
    assert answer.startswith("HTTP/1.1 413 ") and '"too_large"' in answer
    chunked = client.post("/v1/buckets/small/objects", content=iter([b"x" * 600, b"y" * 600]))  # no length: mid-stream
    assert chunked.status_code == 413 and error_code(chunked) == "too_large"
    assert client.post("/v1/buckets/small/objects", content=b"z" * 1000).status_code == 201  # at the limit: fine
    after = snapshot(store)
    assert after["tables"]["objects"] != before["tables"]["objects"]
    assert len(after["tables"]["objects"]) == len(before["tables"]["objects"]) + 1
    assert tmp_entries(store) == []


def test_bad_upload_options_change_nothing(api):
    store, server, client = api
    before = snapshot(store)
    cases = [
        ("/v1/buckets/Bad!/objects", {}, {}, 400, "name_invalid"),
        ("/v1/buckets/priv/objects", {"name": "a//b"}, {}, 400, "invalid"),
        ("/v1/buckets/priv/objects", {"name": MISSING}, {}, 400, "invalid"),
        ("/v1/buckets/priv/objects", {"filename": "a/b"}, {}, 400, "invalid"),
        ("/v1/buckets/priv/objects", {"content_type": "nonsense"}, {}, 400, "invalid"),
        ("/v1/buckets/priv/objects", {"expires_in": "soon"}, {}, 400, "invalid"),
        ("/v1/buckets/priv/objects", {"meta.bad key": "v"}, {}, 400, "invalid"),
        ("/v1/buckets/priv/objects", {"colour": "red"}, {}, 400, "invalid"),
        ("/v1/buckets/priv/objects", {}, {"Content-Type": "not a type"}, 400, "invalid"),
        ("/v1/buckets/other/objects", {}, {}, 403, "token_scope"),
    ]
    for path, params, headers, status, code in cases:
        response = client.post(path, params=params, headers=headers, content=b"payload")
        assert response.status_code == status, (path, params, response.text)
        assert error_code(response) == code, (path, params)
    assert snapshot(store) == before


def test_metadata_list_and_lookup(api):
    store, server, client = api
    ids = [client.post("/v1/buckets/priv/objects", content=f"object {n}".encode(), params={"name": f"l/{n}.txt"})
           .json()["id"] for n in range(5)]
    store.hold(ids[0], "app")
    record = client.get(f"/v1/objects/{ids[0]}").json()
    assert record["id"] == ids[0] and record["names"] == ["l/0.txt"] and record["holds"] == ["app"]
    assert "blob_url" not in record  # a private bucket has no content-addressed URL
    seen, after = [], None
    while True:
        page = client.get("/v1/buckets/priv/objects", params={"limit": 2, **({"after": after} if after else {})}).json()
        seen += [item["id"] for item in page["objects"]]
        assert len(page["objects"]) <= 2
        after = page["next"]
        if after is None:
            break
    assert seen == ids
    found = client.get("/v1/buckets/priv/names/l/3.txt")
    assert found.status_code == 200 and found.json()["id"] == ids[3]
    assert error_code(client.get("/v1/buckets/priv/names/l/9.txt")) == "not_found"
    assert error_code(client.get("/v1/buckets/priv/objects", params={"limit": 0})) == "limit_invalid"
    assert error_code(client.get("/v1/buckets/priv/objects", params={"limit": "x"})) == "limit_invalid"
    assert error_code(client.get("/v1/buckets/priv/objects", params={"after": "nope"})) == "id_invalid"
    assert error_code(client.get("/v1/objects/nope")) == "id_invalid"
    assert error_code(client.get(f"/v1/objects/{MISSING}")) == "not_found"
    public = client.post("/v1/buckets/pub/objects", content=b"pub", params={"name": "p.PNG"}).json()
    assert public["blob_url"] == f"/blobs/{public['hash']}.png"


def test_delete_restore_and_holds(api):
    store, server, client = api
    object_id = client.post("/v1/buckets/priv/objects", content=b"lifecycle", params={"name": "life.txt"}).json()["id"]
    hold = client.put(f"/v1/objects/{object_id}/holds/billing")
    assert hold.status_code == 200 and hold.json()["holds"] == ["billing"]
    assert client.get(f"/v1/objects/{object_id}/holds").json()["holds"] == ["billing"]
    assert client.delete(f"/v1/objects/{object_id}/holds/billing").json()["holds"] == []
    assert error_code(client.delete(f"/v1/objects/{object_id}/holds/billing")) == "not_found"
    deleted = client.delete(f"/v1/objects/{object_id}")
    assert deleted.status_code == 200 and deleted.json()["deleted_at"] is not None
    assert store.get_trashed(object_id).id == object_id
    assert error_code(client.get(f"/v1/objects/{object_id}")) == "not_found"
    assert error_code(client.delete(f"/v1/objects/{object_id}")) == "not_found"
    restored = client.post(f"/v1/objects/{object_id}/restore")
    assert restored.status_code == 200 and restored.json()["names"] == ["life.txt"]
    assert store.get(object_id).names == ["life.txt"]
    assert error_code(client.post(f"/v1/objects/{object_id}/restore")) == "not_found"
    assert error_code(client.post(f"/v1/objects/{MISSING}/restore")) == "not_found"
    long_owner = "o" * 300
    assert error_code(client.put(f"/v1/objects/{object_id}/holds/{long_owner}")) == "invalid"
    assert json.loads(client.get(f"/v1/objects/{object_id}/holds").text)["holds"] == []
