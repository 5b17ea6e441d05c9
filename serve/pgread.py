"""The lookup by id on a PostgreSQL catalog without a thread: psycopg's async pool.

The store's catalog is synchronous (cas/catalog/postgres.py), so on PostgreSQL every lookup
used to hop to a catalog thread and back, which cost more than the query. The bytes routes'
lookup by id instead awaits a connection of this pool on the event loop: a slow query (a
table locked, a server far away) holds that request only, never the loop nor the catalog
threads the other requests use. Its connections are set up as the catalog's are (rows as
dicts, ids as text, the catalog's schema alone on the search_path), and are read-only.
"""

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool

from cas.catalog.base import Row, first_line
from cas.catalog.postgres import PostgresCatalog, connect_options, quote_schema, translate
from cas.errors import CatalogError

MAX_CONNECTIONS = 8
WAIT_FOR_CONNECTION = 30  # seconds, as the catalog's own pool


class AsyncReader:
    def __init__(self, catalog: PostgresCatalog) -> None:
        self.schema = catalog.schema
        self.pool = AsyncConnectionPool(catalog.url, min_size=1, max_size=MAX_CONNECTIONS, open=False,
                                        configure=self._configure, kwargs=connect_options(catalog.url),
                                        timeout=WAIT_FOR_CONNECTION)
        self.describe = catalog.describe

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

    async def all(self, sql: str, params: Mapping[str, Any]) -> list[Row]:
        """The rows of one read (autocommit: its own transaction)."""
        async with self.pool.connection() as connection:
            cursor = await connection.execute(translate(sql), params)
            return await cursor.fetchall()  # type: ignore[return-value]
