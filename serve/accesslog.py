"""One access-log line per request (request id, client, method, path, status, bytes out,
duration), and the request's numbers for /metrics (by route template, never by raw path).

A raw ASGI middleware (it only watches `receive` and `send`). The request id comes from the
client's `X-Request-Id` when it is short and plain, else a new one (`<process prefix>-<counter>`),
and is sent back in `X-Request-Id`.

The lines look like the server's other log lines (`<asctime> assetfs.access <message>`, the
format `assetfs serve` gives logging) but do not go through `logging`: a LogRecord, its
formatting and a flush of stderr per request cost about a quarter of a small GET's time in
the application (profiled under wrk, docs/http.md). `AccessLines` formats each line itself
and writes what one turn of the event loop answered in one write, at the start of the next
turn: a line is out before the server reads anything more.
"""

import asyncio
import itertools
import re
import secrets
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from serve.metrics import Metrics

NAME = "assetfs.access"
_PLAIN_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


class AccessLines:
    """Access-log lines, written in batches once per event-loop turn (or at once off a loop)."""

    def __init__(self, stream: Callable[[], TextIO] = lambda: sys.stderr) -> None:
        self.stream = stream  # looked up at each write: stderr may be replaced (tests, reopened logs)
        self.pending: list[str] = []
        self._second = -1
        self._stamp = ""

    def _asctime(self, now: float) -> str:
        """logging's default asctime, '2026-11-30 02:20:48,123', formatted once per second."""
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int((now - second) * 1000):03d}"

    def add(self, message: str) -> None:
        self.pending.append(f"{self._asctime(time.time())} {NAME} {message}\n")
        if len(self.pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop running: nothing would flush later
                self.flush()

    def flush(self) -> None:
        lines, self.pending = self.pending, []
        if lines:
            stream = self.stream()
            stream.write("".join(lines))
            stream.flush()


class AccessLog:
    def __init__(self, app: ASGIApp, metrics: Callable[[], "Metrics | None"], lines: AccessLines | None = None) -> None:
        self.app = app
        self.metrics = metrics  # the process's Metrics, once the lifespan has made them
        self.lines = lines or AccessLines()
        # ids: a random prefix per process and a counter (os.urandom per request costs ~35 µs here)
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count(1)

    def _next_id(self) -> bytes:
        return f"{self._prefix}-{next(self._count):x}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            try:
                await self.app(scope, receive, send)
            finally:
                self.lines.flush()  # after the lifespan's shutdown: the last requests' lines
            return
        started = time.perf_counter()
        given = b""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                given = value
                break
        request_id = given if _PLAIN_ID.fullmatch(given) else self._next_id()
        status, sent, received = 0, 0, 0

        async def count() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def watch(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, count, watch)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            metrics = self.metrics()
            if metrics is not None:
                metrics.record(getattr(route, "path", "(none)"), scope["method"], status, received, sent, seconds)
            client = scope.get("client") or ("-",)
            self.lines.add(f"{request_id.decode()} {client[0]} {scope['method']} "
                           f"{scope.get('raw_path', b'').decode('latin-1')} {status} {sent} {seconds * 1000:.1f}ms")
