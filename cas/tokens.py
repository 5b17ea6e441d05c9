"""Bearer tokens for the HTTP server (`assetfs token`, docs/http.md), kept in the catalog.

A token is `afs_<id>_<secret>`: the id finds the row, the secret proves possession. Only a
SHA-256 of the secret is stored (the secret is 256 random bits, so a fast hash is enough),
and it is compared in constant time. Each token is scoped to buckets and to read and/or write.
"""

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

from cas.catalog import Catalog, Transaction
from cas.catalog.base import Row
from cas.errors import BadInput, NotFound
from cas.model import iso_time
from cas.validate import check_bucket

PREFIX = "afs_"
TOKEN_PATTERN = re.compile(r"afs_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
ID_PATTERN = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Token:
    id: str
    buckets: tuple[str, ...]
    can_read: bool
    can_write: bool
    created_at: float
    expires_at: float | None

    @classmethod
    def from_row(cls, row: Row) -> "Token":
        return cls(id=row["id"], buckets=tuple(json.loads(row["buckets"])), can_read=bool(row["can_read"]),
                   can_write=bool(row["can_write"]), created_at=row["created_at"], expires_at=row["expires_at"])

    def allows(self, bucket: str, write: bool) -> bool:
        return bucket in self.buckets and (self.can_write if write else self.can_read)

    def to_json(self) -> dict:
        return {"id": self.id, "buckets": list(self.buckets), "read": self.can_read, "write": self.can_write,
                "created_at": iso_time(self.created_at), "expires_at": iso_time(self.expires_at)}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(catalog: Catalog, buckets: list[str], can_read: bool, can_write: bool,
           expires_at: float | None) -> tuple[Token, str]:
    """A new token; returns it and the string to hand to the client (shown once, never stored)."""
    if not buckets:
        raise BadInput("a token needs at least one --bucket")
    for bucket in buckets:
        check_bucket(bucket)
    if not (can_read or can_write):
        raise BadInput("a token needs --read, --write or both")
    now = time.time()
    if expires_at is not None and expires_at <= now:
        raise BadInput("the token's expiry is in the past")
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    row = {"id": token_id, "secret_hash": _digest(secret), "buckets": json.dumps(sorted(set(buckets))),
           "can_read": int(can_read), "can_write": int(can_write), "created_at": now, "expires_at": expires_at}
    catalog.run(lambda tx: tx.execute(
        "insert into tokens (id, secret_hash, buckets, can_read, can_write, created_at, expires_at) "
        "values (:id, :secret_hash, :buckets, :can_read, :can_write, :created_at, :expires_at)", row))
    return Token.from_row(row), f"{PREFIX}{token_id}_{secret}"


def list_tokens(catalog: Catalog) -> list[Token]:
    rows = catalog.run(lambda tx: tx.all("select * from tokens order by created_at, id"), write=False)
    return [Token.from_row(row) for row in rows]


def revoke(catalog: Catalog, token_id: str) -> str:
    """Delete a token by its id (or by the whole token string); returns the id. NotFound
    when there is none."""
    match = TOKEN_PATTERN.fullmatch(token_id)
    token_id = match.group(1) if match else token_id
    if not ID_PATTERN.fullmatch(token_id):
        raise BadInput(f"not a token id: {token_id!r} (expected 16 hex digits, as 'assetfs token ls' shows)")

    def delete(tx: Transaction) -> None:
        if tx.one("select id from tokens where id = :id", {"id": token_id}) is None:
            raise NotFound(f"no token {token_id}")
        tx.execute("delete from tokens where id = :id", {"id": token_id})

    catalog.run(delete)
    return token_id


def parse(presented: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token string, None otherwise: checked before any lookup."""
    match = TOKEN_PATTERN.fullmatch(presented)
    return (match.group(1), match.group(2)) if match else None


def verify(catalog: Catalog, presented: str, now: float | None = None) -> Token | None:
    """The token `presented` stands for, if it is well-formed, known, unexpired and its secret
    matches; None otherwise."""
    parsed = parse(presented)
    if parsed is None:
        return None
    token_id, secret = parsed
    row = catalog.run(lambda tx: tx.one("select * from tokens where id = :id", {"id": token_id}), write=False)
    if row is None or not hmac.compare_digest(row["secret_hash"], _digest(secret)):
        return None
    token = Token.from_row(row)
    if token.expires_at is not None and token.expires_at <= (time.time() if now is None else now):
        return None
    return token
