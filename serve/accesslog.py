"""One access-log line per request: request id, method, path, status, bytes out, duration.

A raw ASGI middleware (it only watches `send`), so it costs a few microseconds. The request
id comes from the client's `X-Request-Id` when it is short and plain, else a new one, and
is sent back in `X-Request-Id`.
"""

import logging
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("assetfs.access")
_PLAIN_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = dict(scope["headers"]).get(b"x-request-id", b"")
        request_id = given if _PLAIN_ID.fullmatch(given) else secrets.token_hex(8).encode()
        status, sent = 0, 0

        async def watch(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            log.info("%s %s %s %s %d %d %.1fms", request_id.decode(), scope.get("client", ("-",))[0], scope["method"],
                     scope.get("raw_path", b"").decode("latin-1"), status, sent, (time.perf_counter() - started) * 1000)
