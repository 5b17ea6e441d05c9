"""The ASGI application: routes, JSON errors, the store opened for the process's life."""

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cas.errors import StoreError
from serve import allocator, api, assets
from serve.accesslog import AccessLog
from serve.errors import HttpError, answer_for, json_response
from serve.fastpath import AssetsFastPath
from serve.metrics import CONTENT_TYPE, Metrics
from serve.service import Service

STORE_ENV = "ASSETFS_SERVE_STORE"  # how `assetfs serve` tells each worker process its store


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def metrics(request: Request) -> Response:
    service: Service = request.app.state.service
    collected: Metrics = request.app.state.metrics
    collected.uploads.set(service.uploads_in_flight)
    body = await service.call(collected.render)  # the store gauges may query the catalog
    return Response(body, media_type=CONTENT_TYPE)


async def readyz(request: Request) -> Response:
    """Ready when the catalog answers."""
    service: Service = request.app.state.service
    try:
        await service.call(service.store.catalog.run, lambda tx: tx.value("select 1 as one"), False)
    except Exception as error:  # any failure of the catalog means not ready
        raise HttpError(503, "not_ready", f"the catalog does not answer: {type(error).__name__}") from None
    return json_response({"status": "ready"})


ASSET_ROUTES = [  # first, so that serve.fastpath may match them before the Router
    Route("/assets/by-id/{id}", assets.by_id, methods=["GET", "HEAD"]),
    Route("/assets/{bucket}/{name:path}", assets.by_name, methods=["GET", "HEAD"]),
]
ROUTES = [
    *ASSET_ROUTES,
    Route("/v1/buckets/{bucket}/objects", api.upload, methods=["POST"]),
    Route("/v1/buckets/{bucket}/objects", api.list_objects, methods=["GET"]),
    Route("/v1/buckets/{bucket}/names/{name:path}", api.lookup_name, methods=["GET"]),
    Route("/v1/objects/{id}", api.get_object, methods=["GET"]),
    Route("/v1/objects/{id}", api.delete_object, methods=["DELETE"]),
    Route("/v1/objects/{id}/restore", api.restore_object, methods=["POST"]),
    Route("/v1/objects/{id}/holds", api.list_holds, methods=["GET"]),
    Route("/v1/objects/{id}/holds/{owner}", api.add_hold, methods=["PUT"]),
    Route("/v1/objects/{id}/holds/{owner}", api.remove_hold, methods=["DELETE"]),
    Route("/v1/objects/{id}/url", api.signed_url, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]


async def _error(request: Request, error: Exception) -> Response:
    """HttpError, Starlette's own answers (no route, wrong method) and store failures as JSON errors."""
    response = answer_for(error, head=request.method == "HEAD")
    if response is None:
        raise error
    return response


def create_app(store_root: Path | None = None) -> AccessLog:
    """The application for the store at `store_root` (default: $ASSETFS_SERVE_STORE), in
    each server process (uvicorn's workers too), which it sets up for uploads (serve/allocator.py)."""
    root = Path(store_root or os.environ[STORE_ENV])
    allocator.keep_freed_memory()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service = app.state.service = Service(root)
        app.state.metrics = Metrics(service.store)
        try:
            await service.start()
            yield
        finally:
            try:
                await service.stop()
            finally:
                service.close()

    app = Starlette(routes=ROUTES, lifespan=lifespan, exception_handlers={
        HttpError: _error, HTTPException: _error, StoreError: _error,
    })
    app.router.redirect_slashes = False  # a wrong path is a JSON 404, not a redirect
    return AccessLog(AssetsFastPath(app, ASSET_ROUTES), lambda: getattr(app.state, "metrics", None))
