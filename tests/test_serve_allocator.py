"""A server process takes a large upload without faulting in fresh memory for each piece of
its body (serve/allocator.py), on both catalogs."""

from pathlib import Path

import httpx

from cas import tokens
from cas.store import Store

MIB = 1024 * 1024


def minor_faults(pid: int) -> int:
    """The process's minor page faults so far (field 10 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[7])


def test_upload_pieces_reuse_memory(store_root, server_factory):
    with Store.open(store_root) as store:
        _, secret = tokens.create(store.catalog, ["big"], True, True, None)
    server = server_factory(store_root)
    block = bytes(range(256)) * (MIB // 256)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=120) as client:
        # the first upload sets up the upload thread (its staging buffers) and the heap
        assert client.post("/v1/buckets/big/objects", content=iter([b"warm-up", block])).status_code == 201
        before = minor_faults(server.process.pid)
        body = (bytes([n]) + block[1:] for n in range(128))  # 128 MiB, streamed
        assert client.post("/v1/buckets/big/objects", content=body).status_code == 201
    faults = minor_faults(server.process.pid) - before
    # fresh memory for every 256 KiB piece would be 32,768 faults; the rest of the request a few hundred
    assert faults < 4096, f"a 128 MiB upload took {faults} page faults in the server"
