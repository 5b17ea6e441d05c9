"""A request body read by the store's one write path (stage → hash → link → commit,
docs/design.md invariant 3).

`Store.put` reads a binary stream in a worker thread; the body arrives on the event loop.
From the store's first read on, a task on the loop receives the body ahead of the store's
reads, so the network and the disk work at once: while the store writes one chunk, the next
arrives (serially, an upload of 1 GiB took the time of both). At most `READ_AHEAD` bytes wait
received (plus one received piece, and the one the store is copying), however large the
upload; the task waits for room beyond that, and uvicorn's flow control then stops reading
the socket. The pieces are handed over as uvicorn gave them, never joined: the store copies
each into its staging buffer (cas/blobtree.py: two 4 MiB buffers per thread).

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
import threading
from collections import deque
from collections.abc import Awaitable, Callable

import blake3

from serve.errors import HttpError

IDLE_TIMEOUT = 30.0  # seconds without a byte of body before the upload is dropped
READ_AHEAD = 4 * 1024 * 1024  # bytes of a body received ahead of the store's reads, at most (and one piece)
HANDOFF = 1024 * 1024  # a waiting worker is woken when this much has arrived (or the body ended, or failed)
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
    """The raw request body, received on the event loop ahead of a worker thread's reads,
    checked as it passes to the worker. `close` (on the loop) ends the reading ahead."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receive: Callable[[], Awaitable[dict]],
                 limit: int | None, expected_length: int | None, digests: dict[str, bytes]) -> None:
        self.loop = loop
        self.receive = receive
        self.limit = limit
        self.expected_length = expected_length
        self.digests = {name: (_ALGORITHMS[name](), value) for name, value in digests.items()}
        self.count = 0
        self.rejection: Rejected | None = None
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # the worker waits here for pieces
        self._pieces: deque[bytes] = deque()
        self._queued = 0  # bytes in _pieces
        self._received_all = False
        self._wants_room = False  # the reader waits for the worker to take pieces
        self._room = asyncio.Event()
        self._reader: concurrent.futures.Future | None = None

    def reject(self, status: int, code: str, message: str) -> Rejected:
        self.rejection = Rejected(HttpError(status, code, message))
        return self.rejection

    async def _read_ahead(self) -> None:
        """Receive the body into `_pieces` until it ends or fails, keeping under READ_AHEAD."""
        try:
            async with asyncio.timeout(None) as idle:  # one timer for the whole body, not a task a piece
                await self._receive_all(idle)
        except TimeoutError:
            self._fail(408, "body_timeout", f"no body data for {IDLE_TIMEOUT:.0f} s")

    async def _receive_all(self, idle: asyncio.Timeout) -> None:
        while True:
            with self._lock:
                full = self._queued >= READ_AHEAD
                if full:
                    self._wants_room = True
                    self._room.clear()
            if full:
                idle.reschedule(None)  # waiting for the store is not the client's idleness
                await self._room.wait()
                continue
            idle.reschedule(self.loop.time() + IDLE_TIMEOUT)
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self._fail(400, "body_incomplete", "the client went away before the body ended")
                return
            body = message.get("body", b"")
            last = not message.get("more_body", False)
            with self._arrived:
                if body:
                    self._pieces.append(body)
                    self._queued += len(body)
                self._received_all = last
                if last or self._queued >= HANDOFF:
                    self._arrived.notify()
            if last:
                return

    def _fail(self, status: int, code: str, message: str) -> None:
        with self._arrived:
            self.reject(status, code, message)
            self._arrived.notify()

    def close(self) -> None:
        """Stop reading ahead (on the loop, once the upload is over, however it ended)."""
        if self._reader is not None:
            self._reader.cancel()

    def _take(self) -> bytes:
        """The next received piece, b"" at the end of the body. In the worker thread."""
        with self._arrived:
            if self._reader is None:
                self._reader = asyncio.run_coroutine_threadsafe(self._read_ahead(), self.loop)
            if not self._pieces and not self._arrived.wait_for(
                    lambda: self._queued >= HANDOFF or self._received_all or self.rejection is not None, IDLE_TIMEOUT + 5):
                if not self._pieces:  # not even the reader's own idle timeout fired: the loop is gone (shutdown)
                    raise self.reject(503, "shutting_down", "the server stopped while the body was arriving")
            if self.rejection is not None:
                raise self.rejection
            if not self._pieces:
                return b""
            piece = self._pieces.popleft()
            self._queued -= len(piece)
            if self._wants_room and self._queued <= READ_AHEAD // 2:
                self._wants_room = False
                self.loop.call_soon_threadsafe(self._room.set)
            return piece

    def pull(self) -> bytes:
        """The next piece of the body (b"" at its end, after the end checks passed). In a worker thread."""
        if self.rejection is not None:
            raise self.rejection
        data = self._take()
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
            self.pending = memoryview(self.stream.pull())
            if not self.pending:
                return 0
        count = min(len(buffer), len(self.pending))
        buffer[:count] = self.pending[:count]
        self.pending = self.pending[count:]
        return count
