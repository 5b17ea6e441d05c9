"""A request body read by the store's one write path (stage → hash → link → commit,
docs/design.md invariant 3).

`Store.put` reads a binary stream in a worker thread; the body arrives on the event loop.
`BodyStream.pull` fetches the next piece from the loop when the store asks for it, so at
most one piece (≤ 1 MiB) of a body is in memory here, however large the upload (the store's
staging has its own two 4 MiB buffers per thread, cas/blobtree.py).

The checks that decide whether a body may be stored run as it passes: its size against the
bucket's `max_size` (413) and against `Content-Length`, and its digests against the
client's `Content-Digest`/`Repr-Digest` at the end. A failed check raises `Rejected` (an
OSError) from inside the store's read, so the staged copy is removed and nothing is stored
(docs/design.md invariant 8): the end checks run before the store's read returns its last
(empty) piece, that is before anything is linked or committed.
"""

import asyncio
import base64
import concurrent.futures
import hashlib
import io
import re
from collections.abc import Awaitable, Callable

import blake3

from serve.errors import HttpError

IDLE_TIMEOUT = 30.0  # seconds without a byte of body before the upload is dropped
PULL_SIZE = 1024 * 1024  # at most this much of a body is in memory per upload (besides the store's buffers)
_DIGEST_ITEM = re.compile(r"\s*([A-Za-z0-9-]+)\s*=\s*:([A-Za-z0-9+/=]*):\s*")
_ALGORITHMS: dict[str, Callable[[], object]] = {
    "sha-256": hashlib.sha256, "sha-512": hashlib.sha512, "blake3": blake3.blake3,
}


class Rejected(OSError):
    """The body failed a check; `error` is the answer. An OSError, so the store's staging
    treats it as a failed read of its source and removes what it staged."""

    def __init__(self, error: HttpError) -> None:
        super().__init__(error.message)
        self.error = error


def parse_digests(header: str | None) -> dict[str, bytes]:
    """RFC 9530 `Content-Digest: sha-256=:<base64>:, …`; sha-256, sha-512 and blake3 are
    checked. 400 for a malformed header or one that names none of them."""
    if header is None:
        return {}
    wanted: dict[str, bytes] = {}
    for item in header.split(","):
        match = _DIGEST_ITEM.fullmatch(item)
        if match is None:
            raise HttpError(400, "digest_invalid", f"malformed digest header {header[:100]!r}; expected sha-256=:<base64>:")
        algorithm = match.group(1).lower()
        try:
            value = base64.b64decode(match.group(2), validate=True)
        except ValueError:
            raise HttpError(400, "digest_invalid", f"the {algorithm} digest is not base64") from None
        if algorithm in _ALGORITHMS:
            wanted[algorithm] = value
    if not wanted:
        raise HttpError(400, "digest_unsupported", "no supported digest algorithm (sha-256, sha-512, blake3)")
    return wanted


class BodyStream:
    """The raw request body, pulled from the event loop by a worker thread, checked as it passes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receive: Callable[[], Awaitable[dict]],
                 limit: int | None, expected_length: int | None, digests: dict[str, bytes]) -> None:
        self.loop = loop
        self.receive = receive
        self.limit = limit
        self.expected_length = expected_length
        self.digests = {name: (_ALGORITHMS[name](), value) for name, value in digests.items()}
        self.count = 0
        self.ended = False
        self.rejection: Rejected | None = None

    def reject(self, status: int, code: str, message: str) -> Rejected:
        self.rejection = Rejected(HttpError(status, code, message))
        return self.rejection

    async def _pull(self, want: int) -> bytes:
        parts, size = [], 0
        while size < want and not self.ended:
            try:
                message = await asyncio.wait_for(self.receive(), IDLE_TIMEOUT)
            except TimeoutError:
                raise self.reject(408, "body_timeout", f"no body data for {IDLE_TIMEOUT:.0f} s") from None
            if message["type"] == "http.disconnect":
                raise self.reject(400, "body_incomplete", "the client went away before the body ended")
            body = message.get("body", b"")
            if body:
                parts.append(body)
                size += len(body)
            if not message.get("more_body", False):
                self.ended = True
        return b"".join(parts)

    def pull(self, want: int = PULL_SIZE) -> bytes:
        """The next piece of the body (b"" at its end, after the end checks passed). In a worker thread."""
        if self.rejection is not None:
            raise self.rejection
        if self.ended:
            self._finish()
            return b""
        pulled = asyncio.run_coroutine_threadsafe(self._pull(want), self.loop)
        try:
            data = pulled.result(IDLE_TIMEOUT + 5)  # the loop is gone (shutdown) if even its own timeout did not fire
        except concurrent.futures.TimeoutError:
            pulled.cancel()
            raise self.reject(503, "shutting_down", "the server stopped while the body was arriving") from None
        self.count += len(data)
        if self.limit is not None and self.count > self.limit:
            raise self.reject(413, "too_large", f"the body is larger than the bucket's max_size ({self.limit} bytes)")
        if self.expected_length is not None and self.count > self.expected_length:
            raise self.reject(400, "length_mismatch", "the body is longer than its Content-Length")
        for hasher, _ in self.digests.values():
            hasher.update(data)  # type: ignore[attr-defined]
        if not data:
            self._finish()
        return data

    def _finish(self) -> None:
        if self.expected_length is not None and self.count != self.expected_length:
            raise self.reject(400, "body_incomplete",
                              f"the body has {self.count} bytes, its Content-Length said {self.expected_length}")
        for name, (hasher, value) in self.digests.items():
            if hasher.digest() != value:  # type: ignore[attr-defined]
                raise self.reject(400, "digest_mismatch", f"the body does not match its {name} digest; nothing was stored")


class RawBody(io.RawIOBase):
    """The whole body as the object's content."""

    def __init__(self, stream: BodyStream) -> None:
        self.stream = stream
        self.pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if not self.pending:
            self.pending = memoryview(self.stream.pull(min(len(buffer), PULL_SIZE)))
            if not self.pending:
                return 0
        count = min(len(buffer), len(self.pending))
        buffer[:count] = self.pending[:count]
        self.pending = self.pending[count:]
        return count
