"""A real nginx (Debian's nginx-light, installed by scripts/test) in front of a real
`assetfs serve` with `accel_redirect`, configured with the server block of docs/http.md:
bytes, Range, 304, the content-addressed /blobs/ URL, and /internal/ closed to the outside.
nginx runs on a free port with its own config, pid, log and temp files, and is always stopped
by the pid in its pid file."""

import io
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from cas import tokens
from cas.store import Store
from serving import add_config, error_code, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "http.md"


def docs_server_block() -> str:
    """The ```nginx block of docs/http.md: the test runs exactly what the docs say."""
    match = re.search(r"```nginx\n(.*?)```", DOCS.read_text(), re.S)
    assert match, "docs/http.md has no ```nginx block"
    return match.group(1)


def nginx_config(folder: Path, store_root: Path, upstream: str, port: int) -> Path:
    block = docs_server_block()
    for old, new in (("/srv/assetfs/", f"{store_root}/"), ("127.0.0.1:8080", upstream),
                     ("listen 80;", f"listen 127.0.0.1:{port};")):
        assert old in block, old
        block = block.replace(old, new)
    temp = "\n".join(f"    {kind}_temp_path {folder}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = folder / "nginx.conf"
    config.write_text(f"""
daemon on;
user root;  # the test's store is private to root (see docs/http.md on nginx's workers)
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 128; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {folder}/access.log;
{temp}
{block}
}}
""")
    return config


def stop_nginx(pid_file: Path) -> None:
    """TERM the master whose pid nginx wrote; wait for it to go (KILL after 10 s)."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def nginx(store_root, server_factory, tmp_path):
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed; scripts/test installs nginx-light")
    add_config(store_root, '[serve]\naccel_redirect = "/internal/blobs/"\n\n[buckets.pub]\npublic = true')
    server = server_factory(store_root)
    folder = tmp_path / "nginx"
    folder.mkdir()
    port = free_port()
    config = nginx_config(folder, store_root, server.url.removeprefix("http://"), port)
    try:
        started = subprocess.run([NGINX, "-c", str(config), "-e", str(folder / "error.log")], capture_output=True,
                                 timeout=30)
        assert started.returncode == 0, started.stderr.decode()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (folder / "error.log").read_text()
                time.sleep(0.05)
        yield url, server
    finally:
        stop_nginx(folder / "nginx.pid")


def test_nginx_sends_the_bytes(nginx, store_root):
    url, server = nginx
    data = os.urandom(2 * 1024 * 1024 + 5)
    with Store.open(store_root) as store:
        private = store.put("priv", io.BytesIO(data), name="big.bin").object
        public = store.put("pub", io.BytesIO(b"public text\n"), name="p.txt").object
        _, token = tokens.create(store.catalog, ["priv"], True, False, None)
    auth = {"Authorization": f"Bearer {token}"}
    etag = f'"{private.hash}"'

    whole = httpx.get(f"{url}/assets/by-id/{private.id}", headers=auth, timeout=30)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["etag"] == etag and whole.headers["server"].startswith("nginx")
    assert whole.headers["content-disposition"].startswith('inline; filename="big.bin"')
    assert whole.headers.get_list("accept-ranges") == ["bytes"]
    assert "x-accel-redirect" not in whole.headers

    ranged = httpx.get(f"{url}/assets/by-id/{private.id}", headers={**auth, "Range": "bytes=1000-1999"})
    assert ranged.status_code == 206 and ranged.content == data[1000:2000]
    assert ranged.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    unsatisfiable = httpx.get(f"{url}/assets/by-id/{private.id}", headers={**auth, "Range": f"bytes={len(data)}-"})
    assert unsatisfiable.status_code == 416 and error_code(unsatisfiable) == "range_not_satisfiable"

    not_modified = httpx.get(f"{url}/assets/by-id/{private.id}", headers={**auth, "If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    by_name = httpx.get(f"{url}/assets/pub/p.txt", headers={"If-None-Match": f'"{public.hash}"'})
    assert by_name.status_code == 304

    assert httpx.get(f"{url}/assets/by-id/{private.id}").status_code == 401  # access still checked
    assert error_code(httpx.get(f"{url}/assets/by-id/{private.id}")) == "unauthorized"

    relative = f"{private.hash[:2]}/{private.hash[2:4]}/{private.hash}"
    for outside in (f"/internal/blobs/{relative}", "/internal/blobs/", f"/internal/blobs/../blobs/{relative}"):
        response = httpx.get(url + outside, headers=auth)
        assert response.status_code == 404 and response.content != data, outside
        assert response.headers.get("content-length") != str(len(data))

    served = httpx.get(f"{url}/blobs/{public.hash}.txt")  # nginx alone, from the blob tree
    assert served.status_code == 200 and served.content == b"public text\n"
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert served.headers["etag"] == f'"{public.hash}"' and served.headers["content-type"].startswith("text/plain")
    assert "/blobs/" not in server.log_text()  # no Python in that path
    assert httpx.get(f"{url}/blobs/{public.hash[:-1]}.txt").status_code == 404
    assert httpx.get(f"{url}/blobs/{'0' * 64}.txt").status_code == 404
