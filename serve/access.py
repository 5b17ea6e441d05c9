"""Who may do what (docs/http.md, "Access").

- A public bucket (`public = true`) is readable by anyone; writing always needs a token.
- Otherwise a bearer token scoped to the bucket and the verb, or a signed URL (one object).
- No credentials: 401. Credentials that are malformed, unknown, revoked, expired, or lack
  the verb for a bucket named in the URL: 403.
- An object reached by id that the caller may not read answers as a missing one would (404
  with a token, 401 without), so its existence is never revealed.
"""

from dataclasses import dataclass

from cas import tokens
from cas.config import Config
from cas.tokens import Token
from serve.errors import HttpError, forbidden, not_found, unauthorized


@dataclass(frozen=True)
class Caller:
    """The credentials a request came with (a signed URL is checked where it is used)."""

    token: Token | None

    def may_read(self, config: Config, bucket: str) -> bool:
        return config.bucket(bucket).public or (self.token is not None and self.token.allows(bucket, write=False))

    def may_write(self, bucket: str) -> bool:
        return self.token is not None and self.token.allows(bucket, write=True)


ANONYMOUS = Caller(None)


def bearer(header: str | None) -> str | None:
    """The token string of an Authorization header; None without one; 403 when malformed."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or tokens.parse(value) is None:
        raise forbidden("token_invalid", "the Authorization header is not 'Bearer afs_…' with a well-formed token")
    return value


def rejected_token() -> HttpError:
    return forbidden("token_invalid", "the token is unknown, revoked or expired")


def hidden(caller: Caller) -> HttpError:
    """What an object the caller may not see answers: the same as a missing one."""
    return not_found() if caller.token is not None else unauthorized()


def check_bucket_read(caller: Caller, config: Config, bucket: str) -> None:
    if caller.may_read(config, bucket):
        return
    if caller.token is None:
        raise unauthorized()
    raise forbidden("token_scope", f"the token may not read bucket {bucket!r}")


def check_bucket_write(caller: Caller, bucket: str) -> None:
    if caller.token is None:
        raise unauthorized("writing needs a bearer token")
    if not caller.may_write(bucket):
        raise forbidden("token_scope", f"the token may not write to bucket {bucket!r}")
