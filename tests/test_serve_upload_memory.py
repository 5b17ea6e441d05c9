"""Uploads stream: a 128 MiB body (with and without Content-Length) and 16 concurrent uploads
of 24 MiB never make the server hold a body in memory (its peak RSS, VmHWM, grows by far less
than the data), and every byte arrives, on both catalogs."""

import concurrent.futures
import hashlib
from pathlib import Path

import blake3
import httpx

from cas import tokens
from cas.store import Store

MIB = 1024 * 1024


def peak_rss(pid: int) -> int:
    """The process's peak resident memory in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def chunks(total: int, seed: bytes) -> tuple[list[bytes], str]:
    block = hashlib.sha512(seed).digest() * (MIB // 64)  # 1 MiB, different per seed
    parts = [bytes([n % 251]) + block[1:] for n in range(total // MIB)]
    hasher = blake3.blake3()
    for part in parts:
        hasher.update(part)
    return parts, hasher.hexdigest()


def test_uploads_stream_without_holding_the_body(store_root, server_factory):
    with Store.open(store_root) as store:
        _, secret = tokens.create(store.catalog, ["big"], True, True, None)
    server = server_factory(store_root)
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=120)
    assert client.post("/v1/buckets/big/objects", content=b"warm-up" * 1000).status_code == 201
    before = peak_rss(server.process.pid)

    parts, digest = chunks(128 * MIB, b"chunked")
    chunked = client.post("/v1/buckets/big/objects", content=iter(parts))  # no Content-Length
    assert chunked.status_code == 201 and chunked.json()["hash"] == digest
    parts, digest = chunks(128 * MIB, b"sized")
    sized = client.post("/v1/buckets/big/objects", content=b"".join(parts))
    assert sized.status_code == 201 and sized.json()["hash"] == digest and sized.json()["size"] == 128 * MIB
    del parts
    single = peak_rss(server.process.pid) - before
    assert single < 48 * MIB, f"one 128 MiB upload grew the server's peak RSS by {single / MIB:.0f} MiB"

    def upload(n: int) -> tuple[str, str]:
        body, expected = chunks(24 * MIB, str(n).encode())
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=120) as own:
            answer = own.post("/v1/buckets/big/objects", content=iter(body), params={"name": f"c/{n}.bin"})
        assert answer.status_code == 201, answer.text
        return answer.json()["hash"], expected

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for got, expected in pool.map(upload, range(16)):
            assert got == expected
    growth = peak_rss(server.process.pid) - before
    # each upload thread has the store's two 4 MiB staging buffers and its body received ahead
    # (READ_AHEAD, 4 MiB, and a piece or two): 16 × 13 MiB, below the 384 MiB of 16 bodies held at once
    assert growth < 16 * 13 * MIB + 48 * MIB, f"16 uploads grew the server's peak RSS by {growth / MIB:.0f} MiB"
    with Store.open(store_root) as store:
        assert len(list(store.list("big"))) == 1 + 2 + 16
