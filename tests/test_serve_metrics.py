"""`/metrics` of a real `assetfs serve`: request counts by route template and status, bytes,
latency, uploads in flight and the store's gauges, on both catalogs."""

import io
import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cas import tokens
from cas.store import Store
from serving import add_config, stop_server


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics(store_root, server_factory):
    with Store.open(store_root) as store:
        info = store.put("b", io.BytesIO(b"12345"), name="m.txt").object
        _, secret = tokens.create(store.catalog, ["b"], True, True, None)
    server = server_factory(store_root)
    auth = {"Authorization": f"Bearer {secret}"}
    for _ in range(3):
        assert httpx.get(f"{server.url}/assets/by-id/{info.id}", headers=auth).content == b"12345"
    assert httpx.get(f"{server.url}/assets/by-id/{info.id}").status_code == 401
    assert httpx.post(f"{server.url}/v1/buckets/b/objects", headers=auth, content=b"x" * 1000).status_code == 201
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    route = "/assets/by-id/{id}"
    assert found[("assetfs_http_requests_total", (("method", "GET"), ("route", route), ("status", "200")))] == 3
    assert found[("assetfs_http_requests_total", (("method", "GET"), ("route", route), ("status", "401")))] == 1
    assert found[("assetfs_http_sent_bytes_total", (("route", route),))] >= 15
    assert found[("assetfs_http_received_bytes_total", (("route", "/v1/buckets/{bucket}/objects"),))] == 1000
    assert found[("assetfs_http_request_seconds_count", (("route", route),))] == 4
    assert found[("assetfs_uploads_in_flight", ())] == 0
    assert found[("assetfs_store_objects", ())] == 2
    assert found[("assetfs_store_logical_bytes", ())] == 1005
    assert found[("assetfs_store_blobs", ())] == 2
    assert not any(f"/assets/by-id/{info.id}" in str(key) for key in found)  # routes by template, not raw paths


def test_access_log_lines(store_root, server_factory):
    """One line per request in the server's log format, with the request id sent back; a plain
    client id is kept, anything else replaced; the last requests' lines are out after a stop."""
    with Store.open(store_root) as store:
        info = store.put("b", io.BytesIO(b"12345"), name="m.txt").object
    add_config(store_root, "[buckets.b]\npublic = true")
    server = server_factory(store_root)
    url = f"{server.url}/assets/by-id/{info.id}"
    given = httpx.get(url, headers={"X-Request-Id": "client-id.7"})
    made = [httpx.get(url, headers={"X-Request-Id": "not plain!"}) for _ in range(2)]
    assert given.headers["x-request-id"] == "client-id.7"
    ids = [response.headers["x-request-id"] for response in made]
    assert len(set(ids)) == 2 and "not plain!" not in ids
    absent = "01a22a41-0000-7000-8000-000000000000"
    missing = httpx.head(f"{server.url}/assets/by-id/{absent}", headers={"X-Request-Id": "head-1"})
    assert missing.status_code == 401
    assert stop_server(server) == 0
    lines = [line for line in server.log_text().splitlines() if " assetfs.access " in line and "/assets/" in line]
    line = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} assetfs\.access (\S+) 127\.0\.0\.1 (GET|HEAD) (\S+) (\d{3}) "
                      r"(\d+) \d+\.\dms")
    parsed = [line.fullmatch(text) for text in lines]
    assert all(parsed), lines
    assert [match.group(1, 2, 3, 4, 5) for match in parsed] == [
        ("client-id.7", "GET", f"/assets/by-id/{info.id}", "200", "5"),
        (ids[0], "GET", f"/assets/by-id/{info.id}", "200", "5"),
        (ids[1], "GET", f"/assets/by-id/{info.id}", "200", "5"),
        ("head-1", "HEAD", f"/assets/by-id/{absent}", "401", "0"),
    ]
