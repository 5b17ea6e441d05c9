"""The `assetfs serve` process: clean stop on SIGTERM (one worker or several), bad options
and configuration as one-line errors, readiness."""

import io
import os
import socket
from pathlib import Path

import httpx

from cas.store import Store
from conftest import run_cli
from serving import add_config, stop_server


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and b"spawn_main" in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))  # a worker (not multiprocessing's resource tracker)
    return found


def test_sigterm_stops_cleanly(store_root, server_factory):
    server = server_factory(store_root)
    assert httpx.get(server.url + "/readyz").json() == {"status": "ready"}
    assert stop_server(server) == 0
    assert "Application shutdown complete" in server.log_text()
    assert "Traceback" not in server.log_text()


def test_several_workers(store_root, server_factory):
    server = server_factory(store_root, "--workers", "2")
    workers = children_of(server.process.pid)
    assert len(workers) >= 2, workers
    for _ in range(20):
        assert httpx.get(server.url + "/healthz").status_code == 200
    assert stop_server(server) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def test_bad_options_and_config(store_root, tmp_path):
    for args in (["--listen", "nowhere"], ["--listen", "127.0.0.1:99999"], ["--workers", "0"]):
        result = run_cli(store_root, "serve", *args, check=2)
        assert result.stderr.count(b"\n") == 1 and b"Traceback" not in result.stderr, args
    result = run_cli(tmp_path / "no-store", "serve", check=2)
    assert b"not an assetfs store" in result.stderr
    add_config(store_root, '[serve]\naccel_redirect = "internal"')
    result = run_cli(store_root, "serve", check=2)
    assert b"serve.accel_redirect" in result.stderr and result.stderr.count(b"\n") == 1
    (store_root / "assetfs.toml").write_text((store_root / "assetfs.toml").read_text().replace(
        'accel_redirect = "internal"', 'colour = "blue"'))
    assert b"unknown key 'colour'" in run_cli(store_root, "serve", check=2).stderr


def test_world_readable_secret_is_refused(store_root, server_factory):
    server = server_factory(store_root)
    stop_server(server)
    (store_root / "serve-secret").chmod(0o644)
    result = run_cli(store_root, "serve", check=1)
    assert b"readable by others" in result.stderr and result.stderr.count(b"\n") == 1


def test_slow_request_heads_are_dropped(tmp_path, server_factory):
    """A connection that sends nothing, or part of a request's head, is closed after the
    head timeout (10 s) instead of being held open for as long as the client likes. (HTTP
    only, no catalog in play: one SQLite store, not both catalogs.)"""
    store, _ = Store.init(tmp_path / "store")
    store.close()
    server = server_factory(store.root)
    host, port = server.url.removeprefix("http://").split(":")
    opened = []
    for payload in (b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"):
        connection = socket.create_connection((host, int(port)), timeout=30)
        connection.sendall(payload)
        opened.append(connection)
    try:
        for connection in opened:
            assert connection.recv(100) == b""  # closed by the server, well before our 30 s timeout
    finally:
        for connection in opened:
            connection.close()
    assert httpx.get(server.url + "/healthz").status_code == 200  # others are served meanwhile


def test_pipelined_requests_answered_in_order(store_root, server_factory):
    """Requests sent in one packet are answered in order, each whole: a GET, a HEAD (a head
    with no body write after it), a 304 and a GET of a body several writes long (the server
    sends what one loop turn wrote in one go, serve/protocol.py)."""
    add_config(store_root, "[buckets.pub]\npublic = true")
    with Store.open(store_root) as store:
        small = store.put("pub", io.BytesIO(b"small body"), name="s.txt").object
        large_data = os.urandom(3 * 1024 * 1024 + 5)
        large = store.put("pub", io.BytesIO(large_data), name="l.bin").object
    server = server_factory(store_root)
    port = int(server.url.rsplit(":", 1)[1])
    requests = [f"GET /assets/by-id/{small.id} HTTP/1.1\r\nHost: t\r\n\r\n",
                f"HEAD /assets/by-id/{small.id} HTTP/1.1\r\nHost: t\r\n\r\n",
                f"GET /assets/by-id/{small.id} HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"{small.hash}\"\r\n\r\n",
                f"GET /assets/by-id/{large.id} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        raw.sendall("".join(requests).encode())
        data = b""
        while chunk := raw.recv(1 << 20):
            data += chunk
    answers = []
    for expected_body in (b"small body", b"", b"", large_data):
        head, _, data = data.partition(b"\r\n\r\n")
        length = len(expected_body)
        answers.append((head.split(b"\r\n")[0], data[:length]))
        data = data[length:]
    assert answers == [(b"HTTP/1.1 200 OK", b"small body"), (b"HTTP/1.1 200 OK", b""),
                       (b"HTTP/1.1 304 Not Modified", b""), (b"HTTP/1.1 200 OK", large_data)]
    assert data == b""
