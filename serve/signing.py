"""Signed URLs: a link to one object that works without a token until it expires.

`/assets/by-id/<id>?expires=<unix seconds>&signature=<hex>`, the signature an HMAC-SHA256
of the id and the expiry under the server's secret. The secret is 32 random bytes in
`<store>/serve-secret`, mode 0600 (readable by the store's owner only), made by `assetfs init`
(or a server's start); every server and `assetfs url`, which only reads it, on the store
share it. Deleting the file (then `assetfs init`, and restarting the servers) invalidates
every link handed out.
"""

import hashlib
import hmac
import os
import re
import secrets
import shlex
import stat
from pathlib import Path

from cas.errors import NotFound, StoreError
from serve.errors import HttpError

SECRET_NAME = "serve-secret"
_EXPIRES = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


def load_secret(store_root: Path, create: bool = True) -> bytes:
    """The store's signing secret, created (atomically, 0600) when missing; StoreError when
    others can read it or this user cannot. Without `create` (`assetfs url`, a read command
    that writes nothing) a missing secret is NotFound, which says how the store's owner makes
    it."""
    path = store_root / SECRET_NAME
    if not path.exists() and not create:
        raise NotFound(f"the store has no signing secret yet ({path}): the store's owner makes it with "
                       f"'assetfs --store {shlex.quote(str(store_root))} init' (or by starting 'assetfs serve')")
    try:
        if not path.exists():
            _create(store_root, path)
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise StoreError(f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); run 'chmod 600 {path}'")
        text = path.read_text().strip()
    except OSError as error:  # a member of the store's group may read the store, not its secret
        raise StoreError(f"cannot {'make' if not path.exists() else 'read'} the signing secret {path}: "
                         f"{error.strerror} (only the store's owner signs links)", error.errno) from None
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise StoreError(f"{path} is damaged (expected 64 hex digits); delete it to make a new one")
    return bytes.fromhex(text)


def _create(store_root: Path, path: Path) -> None:
    staging = store_root / "tmp" / f"serve-secret.{secrets.token_hex(8)}"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(staging, path)  # fails if another process made it first: then theirs is used
    except FileExistsError:
        pass
    finally:
        staging.unlink()


def signature(secret: bytes, object_id: str, expires: int) -> str:
    return hmac.new(secret, f"assetfs-url-v1\n{object_id}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_path(secret: bytes, object_id: str, expires: int) -> str:
    return f"/assets/by-id/{object_id}?expires={expires}&signature={signature(secret, object_id, expires)}"


def check(secret: bytes, object_id: str, expires: str, given: str, now: float) -> None:
    """Raise 403 unless `given` signs `object_id` until `expires` and that time has not passed."""
    if not _EXPIRES.fullmatch(expires) or not _SIGNATURE.fullmatch(given):
        raise HttpError(403, "signature_invalid", "malformed signed URL: expires and signature are wrong")
    if not hmac.compare_digest(given, signature(secret, object_id, int(expires))):
        raise HttpError(403, "signature_invalid", "the URL's signature does not match")
    if int(expires) <= now:
        raise HttpError(403, "signature_expired", "the signed URL has expired")
