"""uvicorn's httptools protocol with a deadline for each request's head, its writes of one
event-loop turn sent together, and request bodies handed on without uvicorn's two copies of
each piece (`ServeProtocol.on_body`).

uvicorn closes a keep-alive connection idle between requests (`timeout_keep_alive`), but a
connection that never sends a request, or sends part of its head and stalls, stays open as
long as the client likes: a few hundred such clients would use up the server's connections.
Here every connection must deliver each request's head (request line and headers) within
`HEAD_TIMEOUT` seconds of its first byte (or, for the first request, of the connection),
else it is closed. Slow bodies are the upload's business (serve/body.py, `IDLE_TIMEOUT`), slow
readers the response's (serve/assets.py, `SEND_TIMEOUT`).

uvicorn writes a response's head and each piece of its body to the socket as it gets them:
a small GET costs two `send` syscalls, each waking the client (on loopback, its processing
too), which under wrk took about as long as the whole application. The connection's
transport is wrapped so that what one turn of the event loop writes goes out in one
`writelines` (one `writev`) at the start of the next turn: head and body together, and
the answers to pipelined requests too. Nothing waits longer than that turn; flow control
is the real transport's (it pauses and resumes the protocol as before), and at most what
one turn wrote (one body chunk, serve/assets.py) waits here.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT = 10.0


class TurnWriter:
    """A transport whose writes wait for the end of the loop turn, then go out together;
    everything else is the wrapped transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending or self._transport.is_closing():
            return  # the connection is gone: the real transport would drop the bytes too
        if len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)

    def close(self) -> None:
        self.flush()  # close() sends what is buffered first: what this turn wrote is not lost
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ServeProtocol(HttpToolsProtocol):
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
        super().connection_made(TurnWriter(transport, self.loop))  # type: ignore[arg-type]
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """uvicorn's, without its two copies of every piece of a request body: it appends each
        piece to a bytearray, and its `receive` copies that into a bytes object. Here a piece
        that finds nothing buffered is kept as it is, and `receive`'s `bytes()` of a bytes
        object is that object (serve/body.py reads uploads in these pieces). A second piece
        before the application's next `receive` is appended as uvicorn does."""
        cycle = self.cycle
        if isinstance(cycle.body, bytes):
            cycle.body = bytearray(cycle.body)
        if cycle.body or cycle.response_complete or self.parser.should_upgrade():
            super().on_body(body)
            return
        cycle.body = body  # type: ignore[assignment]
        if len(body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
