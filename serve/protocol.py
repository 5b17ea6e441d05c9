"""uvicorn's httptools protocol with a deadline for each request's head.

uvicorn closes a keep-alive connection idle between requests (`timeout_keep_alive`), but a
connection that never sends a request, or sends part of its head and stalls, stays open as
long as the client likes: a few hundred such clients would use up the server's connections.
Here every connection must deliver each request's head (request line and headers) within
`HEAD_TIMEOUT` seconds of its first byte (or, for the first request, of the connection),
else it is closed. Slow bodies are the upload's business (serve/body.py, `IDLE_TIMEOUT`), slow
readers the response's (serve/assets.py, `SEND_TIMEOUT`).
"""

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT = 10.0


class HeadTimeoutProtocol(HttpToolsProtocol):
    _head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
