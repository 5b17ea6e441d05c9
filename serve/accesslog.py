"""One access-log line per request (request id, method, path, status, bytes out, duration),
and the request's numbers for /metrics (by route template, never by raw path).

A raw ASGI middleware (it only watches `receive` and `send`), so it costs a few microseconds. The request
id comes from the client's `X-Request-Id` when it is short and plain, else a new one
(`<process prefix>-<counter>`), and is sent back in `X-Request-Id`.
"""

import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from serve.metrics import Metrics

log = logging.getLogger("assetfs.access")
_PLAIN_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


class AccessLog:
    def __init__(self, app: ASGIApp, metrics: Callable[[], "Metrics | None"]) -> None:
        self.app = app
        self.metrics = metrics  # the process's Metrics, once the lifespan has made them
        # ids: a random prefix per process and a counter (os.urandom per request costs ~35 µs here)
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count(1)

    def _next_id(self) -> bytes:
        return f"{self._prefix}-{next(self._count):x}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = dict(scope["headers"]).get(b"x-request-id", b"")
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
            log.info("%s %s %s %s %d %d %.1fms", request_id.decode(), scope.get("client", ("-",))[0], scope["method"],
                     scope.get("raw_path", b"").decode("latin-1"), status, sent, seconds * 1000)
