"""What every request handler shares: the open store, its worker threads and the secret.

The store's API is synchronous, so catalog calls run in a small pool of threads (a slow
query then holds one thread, never the event loop). The one exception is the lookup by id
that serving bytes makes: the catalog answers it on the event loop when it can do so at once
(`Catalog.read_now`: SQLite with no lock in the way and a bound on its steps), sparing the
hop to a thread and back that cost more than the query; on PostgreSQL it is awaited on the
loop through psycopg's async pool (serve/pgread.py); otherwise it runs in a thread too. Uploads, which hold a thread while
their body streams in, and large bodies read from blob files have pools of their own, so
neither starves the catalog lookups every request makes.
"""

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from starlette.requests import Request

from cas import tokens
from cas.catalog.base import WouldWait
from cas.errors import NotFound
from cas.model import ObjectInfo
from cas.store import Store
from casgc.recheck import recheck
from serve import signing
from serve.access import ANONYMOUS, Caller, bearer, rejected_token

if TYPE_CHECKING:
    from serve.pgread import AsyncReader

log = logging.getLogger("assetfs.serve")
T = TypeVar("T")
CATALOG_THREADS = 16
_LIVE_OBJECT = "select * from objects where id = :id and deleted_at is null"
UPLOAD_THREADS = 32
READ_THREADS = 8


class Service:
    def __init__(self, store_root: Path) -> None:
        self.store = Store.open(store_root)
        self.config = self.store.config
        self.secret = signing.load_secret(self.store.root)
        self.blobs = str(self.store.tree.blobs)  # blob files are opened by f"{blobs}/{blob_relative(hash)}"
        self.catalog_pool = ThreadPoolExecutor(CATALOG_THREADS, thread_name_prefix="assetfs-catalog")
        self.upload_pool = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="assetfs-upload")
        self.read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="assetfs-read")  # large bodies
        self.uploads_in_flight = 0
        self.reader: "AsyncReader | None" = None  # PostgreSQL's async pool, opened by `start`
        self.store.catalog.on_released = self._names_let_go

    def _names_let_go(self, object_ids: set[str]) -> None:
        """An upload took over the last name of these objects: their reference check runs now,
        in a catalog thread, not in the request (docs/concurrency.md, "A name let go")."""
        self.catalog_pool.submit(_recheck, self.store, object_ids)

    async def start(self) -> None:
        """On the event loop, before the first request."""
        if self.store.catalog.dialect == "postgres":
            from serve.pgread import AsyncReader

            self.reader = AsyncReader(self.store.catalog)  # type: ignore[arg-type]
            await self.reader.open()

    async def stop(self) -> None:
        """On the event loop, after the last request; then `close`."""
        if self.reader is not None:
            await self.reader.close()

    def close(self) -> None:
        """At shutdown, after uvicorn's grace for requests in flight. An upload still running
        waits on this event loop for its body, so its pool is not waited for (its thread gives
        up within serve.body's pull timeout; its staged copy is removed)."""
        self.upload_pool.shutdown(wait=False, cancel_futures=True)
        self.catalog_pool.shutdown(wait=True, cancel_futures=True)
        self.read_pool.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    async def call(self, work: Callable[..., T], *args: object) -> T:
        """Run a store call in a catalog thread."""
        return await asyncio.get_running_loop().run_in_executor(self.catalog_pool, functools.partial(work, *args))

    async def caller(self, request: Request) -> Caller:
        """The request's credentials: 403 for a malformed or rejected token (checked before
        any catalog access when malformed)."""
        presented = bearer(request.headers.get("authorization"))
        if presented is None:
            return ANONYMOUS
        token = await self.call(tokens.verify, self.store.catalog, presented)
        if token is None:
            raise rejected_token()
        return Caller(token)

    async def live(self, object_id: str, with_names: bool = False) -> ObjectInfo | None:
        """A live, unexpired object (the id already validated); None otherwise. Without its
        names unless asked: serving bytes needs only the object's row (one query)."""
        if with_names:
            try:
                info = await self.call(self.store.get, object_id)
            except NotFound:
                return None
        else:
            if self.reader is not None:  # PostgreSQL: awaited on the loop (batched), no thread
                row = await self.reader.live_object(object_id)
            else:
                params = {"id": object_id}
                try:  # on the event loop when the catalog can answer at once (SQLite; no thread hop)
                    rows = self.store.catalog.read_now(_LIVE_OBJECT, params)
                except WouldWait:
                    rows = await self.call(self.store.catalog.run, lambda tx: tx.all(_LIVE_OBJECT, params), False)
                row = rows[0] if rows else None
            info = ObjectInfo.from_row(row) if row is not None else None
        return None if info is None or _expired(info) else info

    async def named(self, bucket: str, name: str) -> ObjectInfo | None:
        try:
            info = await self.call(self.store.find, bucket, name)
        except NotFound:
            return None
        return None if _expired(info) else info


def _expired(info: ObjectInfo) -> bool:
    """Past its expiry but not collected yet: served as gone (docs/http.md)."""
    return info.expires_at is not None and info.expires_at <= time.time()


def _recheck(store: Store, object_ids: set[str]) -> None:
    try:
        recheck(store, object_ids)
    except Exception:
        log.exception("checking %d objects that lost their last name failed; the collector will", len(object_ids))
