"""Two servers, the CLI and the garbage collector on one store at once (both catalogs):
what one server stores, the other serves; a delete through one is seen by the other."""

import concurrent.futures
import os

import httpx

from cas import tokens
from cas.store import Store
from conftest import run_cli


def test_two_servers_and_gc_on_one_store(store_root, server_factory):
    with Store.open(store_root) as store:
        _, secret = tokens.create(store.catalog, ["shared"], True, True, None)
    auth = {"Authorization": f"Bearer {secret}"}
    first, second = server_factory(store_root), server_factory(store_root)
    bodies = {n: os.urandom(50_000 + n) for n in range(24)}

    def upload(n: int) -> tuple[int, str]:
        server = first if n % 2 else second
        answer = httpx.post(f"{server.url}/v1/buckets/shared/objects", headers=auth, content=bodies[n],
                            params={"name": f"n/{n}.bin"}, timeout=60)
        assert answer.status_code == 201, answer.text
        return n, answer.json()["id"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        gc = pool.submit(run_cli, store_root, "gc")  # a collector pass beside the uploads
        ids = dict(pool.map(upload, bodies))
        assert gc.result().returncode == 0
    for n, object_id in ids.items():
        other = second if n % 2 else first
        assert httpx.get(f"{other.url}/assets/by-id/{object_id}", headers=auth).content == bodies[n]
        assert httpx.get(f"{other.url}/assets/shared/n/{n}.bin", headers=auth).content == bodies[n]
    assert httpx.delete(f"{first.url}/v1/objects/{ids[0]}", headers=auth).status_code == 200
    assert httpx.get(f"{second.url}/assets/by-id/{ids[0]}", headers=auth).status_code == 404
    listed = run_cli(store_root, "ls", "shared").stdout.decode().splitlines()
    assert len(listed) == len(bodies) - 1
    assert run_cli(store_root, "fsck").returncode == 0


def test_server_beside_a_mount(mounted, server_factory):
    """A file copied into the mount is served by name once committed; an upload through the
    server shows up in the mount."""
    with Store.open(mounted.store_root) as store:
        _, secret = tokens.create(store.catalog, ["m"], True, True, None)
    auth = {"Authorization": f"Bearer {secret}"}
    server = server_factory(mounted.store_root)
    (mounted.path / "m").mkdir()
    data = os.urandom(100_000)
    (mounted.path / "m" / "copied.bin").write_bytes(data)
    mounted.settle()  # the mount's write-behind has committed it
    response = httpx.get(f"{server.url}/assets/m/copied.bin", headers=auth)
    assert response.status_code == 200 and response.content == data
    uploaded = httpx.post(f"{server.url}/v1/buckets/m/objects", headers=auth, content=b"from http",
                          params={"name": "up/there.txt"})
    assert uploaded.status_code == 201
    assert (mounted.path / "m" / "up" / "there.txt").read_bytes() == b"from http"
