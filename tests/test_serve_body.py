"""An upload's body on its way to the store (serve/body.py, serve/protocol.py): received
ahead of the store's reads, within a bound, and stored whole and in order however its
pieces arrive."""

import asyncio
import json
import socket
import threading
from collections.abc import Iterator

import blake3
import httpx
import pytest

from cas import tokens
from cas.store import Store
from serve.body import READ_AHEAD, BodyStream
from test_serve_api import read_answer

PIECE = 256 * 1024  # what uvicorn hands over for one read of the socket, at most


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in its own thread, as the server's does; the test is the worker."""
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.call_soon_threadsafe(running.stop)
        thread.join(10)
        running.close()


def test_body_is_received_ahead_of_the_stores_reads_within_a_bound(loop):
    total = 64  # pieces: 16 MiB, four times READ_AHEAD
    handed = [0]
    ahead = threading.Event()  # READ_AHEAD bytes received, the store having taken one piece

    async def receive() -> dict:
        handed[0] += 1
        if handed[0] * PIECE >= READ_AHEAD:
            ahead.set()
        return {"type": "http.request", "body": bytes([handed[0] % 251]) * PIECE, "more_body": handed[0] < total}

    stream = BodyStream(loop, receive, None, total * PIECE, {})
    try:
        pieces = [stream.pull()]
        # the store is busy with that piece (writing it): the body keeps arriving meanwhile
        assert ahead.wait(10), f"only {handed[0]} pieces were received while the store did not read"
        for _ in range(20):  # loop turns in which the reader would go on if nothing bounded it
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(10)
        assert handed[0] * PIECE <= READ_AHEAD + 2 * PIECE  # one piece taken, one over the mark
        while piece := stream.pull():
            pieces.append(piece)
    finally:
        loop.call_soon_threadsafe(stream.close)
    assert [piece[0] for piece in pieces] == [n % 251 for n in range(1, total + 1)]
    assert sum(map(len, pieces)) == stream.count == total * PIECE


def test_pieces_that_arrive_together_are_stored_in_order(store_root, server_factory):
    """Chunks that reach the server in one write (so several arrive before the application
    reads) and a body sent after its head, in small writes: every byte stored, in order."""
    with Store.open(store_root) as store:
        _, secret = tokens.create(store.catalog, ["b"], True, True, None)
    server = server_factory(store_root)
    host, port = server.url.removeprefix("http://").split(":")
    chunks = [bytes([n]) * size for n, size in enumerate([1, 70_000, 3, 300_000, 65_536, 7])]
    body = b"".join(chunks)
    head = f"POST /v1/buckets/b/objects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
        raw.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + encoded)
        chunked = read_answer(raw)
    assert chunked.startswith("HTTP/1.1 201 "), chunked
    assert json.loads(chunked.partition("\r\n\r\n")[2])["hash"] == blake3.blake3(body).hexdigest()
    other = body[::-1]
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        raw.sendall(f"{head}Content-Length: {len(other)}\r\n\r\n".encode())
        for offset in range(0, len(other), 50_000):
            raw.sendall(other[offset:offset + 50_000])
        sized = read_answer(raw)
    assert sized.startswith("HTTP/1.1 201 "), sized
    assert json.loads(sized.partition("\r\n\r\n")[2])["hash"] == blake3.blake3(other).hexdigest()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        stored = {record["hash"]: record for record in client.get("/v1/buckets/b/objects").json()["objects"]}
        assert set(stored) == {blake3.blake3(body).hexdigest(), blake3.blake3(other).hexdigest()}
        for record in stored.values():
            assert client.get(f"/assets/by-id/{record['id']}").content in (body, other)
