"""Who may do what on a real `assetfs serve`, on both catalogs: tokens from the CLI, their
scopes, expiry and revocation, public buckets, signed URLs; 401/403/404 exactly as
docs/http.md says, never revealing a private object to a stranger."""

import io
import json
import stat
import subprocess
import time

import httpx
import pytest

from cas.store import Store
from conftest import run_cli
from serve import signing
from serving import add_config, error_code

MISSING = "01900000-0000-7000-8000-000000000000"


def make_token(store_root, *args: str) -> str:
    return run_cli(store_root, "token", "create", *args).stdout.decode().strip()


@pytest.fixture
def setup(store_root, server_factory):
    add_config(store_root, "[buckets.pub]\npublic = true")
    with Store.open(store_root) as store:
        private = store.put("priv", io.BytesIO(b"private bytes"), name="secret.txt").object
        public = store.put("pub", io.BytesIO(b"public bytes"), name="open.txt").object
    return server_factory(store_root), private, public


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_cli(store_root):
    created = json.loads(run_cli(store_root, "token", "create", "--bucket", "a", "--bucket", "b", "--read",
                                 "--expires-in", "1d", "--json").stdout)
    assert created["buckets"] == ["a", "b"] and created["read"] and not created["write"]
    assert created["token"].startswith(f"afs_{created['id']}_")
    listed = [json.loads(line) for line in run_cli(store_root, "token", "ls", "--json").stdout.splitlines()]
    assert [item["id"] for item in listed] == [created["id"]] and "token" not in listed[0]
    with Store.open(store_root) as store:  # stored hashed: the secret is nowhere in the catalog
        row = store.catalog.run(lambda tx: tx.one("select * from tokens"), write=False)
    secret = created["token"].split("_", 2)[2]  # afs_<id>_<secret>: the secret may hold "_" itself
    assert secret not in json.dumps(row, default=str)
    for args in (["--bucket", "a"], ["--read"], ["--bucket", "Bad!", "--read"], ["--bucket", "a", "--read",
                                                                                   "--expires-in", "x"]):
        result = run_cli(store_root, "token", "create", *args, check=2)
        assert result.stderr.count(b"\n") == 1 and b"Traceback" not in result.stderr
    assert run_cli(store_root, "token", "revoke", "nothex", check=2).stderr.startswith(b"assetfs: not a token id")
    assert b"no token" in run_cli(store_root, "token", "revoke", "0123456789abcdef", check=1).stderr
    revoked = run_cli(store_root, "token", "revoke", created["token"]).stdout  # the whole token works too
    assert revoked == f"revoked {created['id']}\n".encode()  # the secret is never echoed
    assert run_cli(store_root, "token", "ls").stdout == b""


def test_no_credentials(setup):
    server, private, public = setup
    for url in (f"/assets/by-id/{private.id}", f"/assets/by-id/{MISSING}", "/assets/priv/secret.txt",
                "/assets/priv/nothing.txt", f"/v1/objects/{private.id}", f"/v1/objects/{MISSING}",
                "/v1/buckets/priv/objects"):
        response = httpx.get(server.url + url)
        assert response.status_code == 401, url  # the same for a missing and an existing private object
        assert error_code(response) == "unauthorized" and response.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{server.url}/assets/by-id/{public.id}").content == b"public bytes"
    assert httpx.get(f"{server.url}/v1/objects/{public.id}").json()["id"] == public.id
    assert error_code(httpx.get(f"{server.url}/assets/pub/missing.txt")) == "not_found"
    for method, url in [("POST", "/v1/buckets/pub/objects"), ("DELETE", f"/v1/objects/{public.id}"),
                        ("PUT", f"/v1/objects/{public.id}/holds/me"), ("POST", f"/v1/objects/{public.id}/url")]:
        response = httpx.request(method, server.url + url, content=b"x" if method == "POST" else None)
        assert response.status_code == 401, (method, url)


def test_wrong_credentials(setup, store_root):
    server, private, public = setup
    other = make_token(store_root, "--bucket", "elsewhere", "--read", "--write")
    reader = make_token(store_root, "--bucket", "priv", "--read")
    writer = make_token(store_root, "--bucket", "priv", "--write")
    for header in ("Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer afs_0123456789abcdef_" + "A" * 43,
                   "Bearer " + reader[:-1] + ("B" if reader[-1] != "B" else "C")):
        response = httpx.get(f"{server.url}/assets/by-id/{private.id}", headers={"Authorization": header})
        assert response.status_code == 403 and error_code(response) == "token_invalid", header
    # a token for another bucket learns nothing about this one's objects by id
    for object_id in (private.id, MISSING):
        response = httpx.get(f"{server.url}/assets/by-id/{object_id}", headers=bearer(other))
        assert response.status_code == 404 and error_code(response) == "not_found"
    by_name = httpx.get(f"{server.url}/assets/priv/secret.txt", headers=bearer(other))
    assert by_name.status_code == 403 and error_code(by_name) == "token_scope"
    assert httpx.get(f"{server.url}/assets/by-id/{public.id}", headers=bearer(other)).status_code == 200
    # verbs
    assert httpx.get(f"{server.url}/assets/by-id/{private.id}", headers=bearer(reader)).content == b"private bytes"
    for method, url in [("POST", "/v1/buckets/priv/objects"), ("DELETE", f"/v1/objects/{private.id}"),
                        ("PUT", f"/v1/objects/{private.id}/holds/me")]:
        response = httpx.request(method, server.url + url, headers=bearer(reader), content=b"x" if method == "POST" else None)
        assert response.status_code == 403 and error_code(response) == "token_scope", (method, url)
    assert httpx.get(f"{server.url}/assets/by-id/{private.id}", headers=bearer(writer)).status_code == 404
    upload = httpx.post(f"{server.url}/v1/buckets/priv/objects", headers=bearer(writer), content=b"written")
    assert upload.status_code == 201
    with Store.open(store_root) as store:
        assert store.get(private.id).deleted_at is None  # nothing the rejected calls asked for happened


def test_revoked_and_expired_tokens(setup, store_root):
    server, private, public = setup
    token = make_token(store_root, "--bucket", "priv", "--read")
    short = make_token(store_root, "--bucket", "priv", "--read", "--expires-in", "1s")
    assert httpx.get(f"{server.url}/assets/by-id/{private.id}", headers=bearer(token)).status_code == 200
    assert httpx.get(f"{server.url}/assets/by-id/{private.id}", headers=bearer(short)).status_code == 200
    run_cli(store_root, "token", "revoke", token.split("_")[1])
    time.sleep(1.1)
    for gone in (token, short):
        response = httpx.get(f"{server.url}/assets/by-id/{private.id}", headers=bearer(gone))
        assert response.status_code == 403 and error_code(response) == "token_invalid"


def test_signed_urls(setup, store_root, tmp_path):
    server, private, public = setup
    link = run_cli(store_root, "url", private.id, "--expires-in", "10m").stdout.decode().strip()
    assert link.startswith(f"/assets/by-id/{private.id}?expires=")
    fetched = subprocess.run(["curl", "-sS", "-f", server.url + link], capture_output=True, timeout=30)
    assert fetched.returncode == 0 and fetched.stdout == b"private bytes"
    assert httpx.get(server.url + link).headers["cache-control"].startswith("private, max-age=")
    secret_file = store_root / signing.SECRET_NAME
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = signing.load_secret(store_root)
    past = signing.signed_path(secret, private.id, int(time.time()) - 1)
    other_id = signing.signed_path(secret, public.id, int(time.time()) + 600).split("?")[1]
    tampered = link[:-1] + ("0" if link[-1] != "0" else "1")
    longer = link.replace("expires=", "expires=9")
    for bad, code in [(past, "signature_expired"), (tampered, "signature_invalid"), (longer, "signature_invalid"),
                      (f"/assets/by-id/{private.id}?{other_id}", "signature_invalid"),
                      (f"/assets/by-id/{private.id}?expires=soon&signature=x", "signature_invalid"),
                      (f"/assets/by-id/{private.id}?signature=" + "0" * 64, "signature_invalid")]:
        response = httpx.get(server.url + bad)
        assert response.status_code == 403 and error_code(response) == code, bad
    reader = make_token(store_root, "--bucket", "priv", "--read", "--expires-in", "2m")
    made = httpx.post(f"{server.url}/v1/objects/{private.id}/url", params={"expires_in": "1h"}, headers=bearer(reader))
    assert made.status_code == 200
    assert made.json()["expires_at"] <= time.time() + 121  # never past the token's own expiry
    assert httpx.get(server.url + made.json()["url"]).content == b"private bytes"
    for bad in ("0s", "8d", "x"):
        response = httpx.post(f"{server.url}/v1/objects/{private.id}/url", params={"expires_in": bad},
                              headers=bearer(reader))
        assert response.status_code == 400 and error_code(response) == "invalid", bad
    with Store.open(store_root) as store:
        store.delete(private.id)
    assert error_code(httpx.get(server.url + link)) == "not_found"
    assert b"is in the trash" in run_cli(store_root, "url", private.id, check=1).stderr
    assert run_cli(store_root, "url", "nope", check=2).stderr.startswith(b"assetfs: not an object id")
    assert b"longer than 0s" in run_cli(store_root, "url", public.id, "--expires-in", "0s", check=2).stderr
