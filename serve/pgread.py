"""The lookup by id on a PostgreSQL catalog without a thread: psycopg's async pool.

The store's catalog is synchronous (cas/catalog/postgres.py), so on PostgreSQL every lookup
used to hop to a catalog thread and back, which cost more than the query. The bytes routes'
lookup by id instead awaits a connection of this pool on the event loop: a slow query (a
table locked, a server far away) holds that request only, never the loop nor the catalog
threads the other requests use. Its connections are set up as the catalog's are (rows as
dicts, ids as text, the catalog's schema alone on the search_path), and are read-only.

Lookups of live objects by id are batched: the ids asked for during one turn of the event
loop are read with one query at the start of the next (`id = any(...)`). psycopg spends about
130 µs of CPU on a query in this process, more than all the rest of a small GET, so under
load (wrk -c64: batches of tens) this is what lets PostgreSQL keep up with SQLite. Each
batch is launched after every request in it arrived, on a connection of its own, in autocommit:
it sees everything committed before any of its requests came in, as a query per request would
(docs/concurrency.md). A batch that waits (a locked table) holds only its own requests; the
next turn's lookups go out as another batch on another connection.
"""

import asyncio
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool

from cas.catalog.base import Row, first_line
from cas.catalog.postgres import PostgresCatalog, connect_options, quote_schema
from cas.errors import CatalogError

MAX_CONNECTIONS = 8
WAIT_FOR_CONNECTION = 30  # seconds, as the catalog's own pool
_LIVE_OBJECTS = "select * from objects where id = any(%(ids)s::uuid[]) and deleted_at is null"


class AsyncReader:
    def __init__(self, catalog: PostgresCatalog) -> None:
        self.schema = catalog.schema
        self.pool = AsyncConnectionPool(catalog.url, min_size=1, max_size=MAX_CONNECTIONS, open=False,
                                        configure=self._configure, kwargs=connect_options(catalog.url),
                                        timeout=WAIT_FOR_CONNECTION)
        self.describe = catalog.describe
        self._asked: dict[str, list[asyncio.Future[Row | None]]] = {}  # ids of the next batch, and who waits
        self._batches: set[asyncio.Task[None]] = set()  # running (a reference keeps each alive)

    async def _configure(self, connection: psycopg.AsyncConnection) -> None:
        connection.row_factory = dict_row  # type: ignore[assignment]
        connection.adapters.register_loader("uuid", TextLoader)
        await connection.execute("select set_config('search_path', %s, false)", (quote_schema(self.schema),))
        await connection.execute("set default_transaction_read_only = on")

    async def open(self) -> None:
        try:
            await self.pool.open(wait=True, timeout=15)
        except psycopg.Error as error:
            raise CatalogError(f"cannot connect to the catalog database {self.describe()}: {first_line(error)}") from None

    async def close(self) -> None:
        await self.pool.close()

    async def _rows(self, sql: str, params: Mapping[str, Any]) -> list[Row]:
        """The rows of one read (autocommit: its own transaction)."""
        async with self.pool.connection() as connection:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchall()  # type: ignore[return-value]

    async def live_object(self, object_id: str) -> Row | None:
        """The row of a live (not trashed) object, None if there is none; batched (see above)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Row | None] = loop.create_future()
        if not self._asked:
            loop.call_soon(self._launch)
        self._asked.setdefault(object_id, []).append(answer)
        return await answer

    def _launch(self) -> None:
        asked, self._asked = self._asked, {}
        batch = asyncio.get_running_loop().create_task(self._read(asked))
        self._batches.add(batch)
        batch.add_done_callback(self._batches.discard)

    async def _read(self, asked: dict[str, list[asyncio.Future[Row | None]]]) -> None:
        try:
            rows = await self._rows(_LIVE_OBJECTS, {"ids": list(asked)})
        except BaseException as error:  # every request of the batch gets the failure, as its own query would
            for answers in asked.values():
                for answer in answers:
                    if answer.done():
                        continue
                    if isinstance(error, Exception):
                        answer.set_exception(error)
                    else:  # cancelled (the server stops): so are the lookups waiting for it
                        answer.cancel()
            if not isinstance(error, Exception):
                raise
            return
        found = {row["id"]: row for row in rows}
        for object_id, answers in asked.items():
            for answer in answers:
                if not answer.done():  # a request whose client left is cancelled
                    answer.set_result(found.get(object_id))
