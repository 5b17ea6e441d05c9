"""GET and HEAD of an object's bytes: `/assets/by-id/{id}` and `/assets/{bucket}/{name…}`.

Blobs never change (docs/design.md invariant 4), so the BLAKE3 hash is a strong validator
and a by-id answer of a public bucket may be cached forever.

Strong ETag (the BLAKE3 hash), conditional requests, one byte range, and the body from the
blob file: small bodies with one `os.pread` on the event loop, large ones in 1 MiB chunks
read in a worker thread each (uvicorn offers no pathsend/sendfile), or, with
`[serve] accel_redirect`, no body at all: nginx sends the file (X-Accel-Redirect).
"""

import asyncio
import os
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cas.blobtree import blob_relative
from cas.errors import BadInput
from cas.ids import parse_object_id
from cas.model import ObjectInfo
from cas.validate import check_bucket, split_name
from serve import signing
from serve.access import check_bucket_read, hidden
from serve.conditional import Slice, check_preconditions, choose_slice, content_disposition, http_date
from serve.errors import HttpError, bad_request, not_found
from serve.service import Service

SMALL_BODY = 256 * 1024  # read at once on the event loop (from the page cache: microseconds)
CHUNK = 1024 * 1024
SEND_TIMEOUT = 60.0  # seconds a client may take to accept one chunk before it is dropped
IMMUTABLE = "max-age=31536000, immutable"
YEAR = 31536000


def object_id_of(text: str) -> str:
    try:
        return parse_object_id(text)
    except BadInput:
        raise bad_request("id_invalid", f"not an object id: {text[:80]!r}") from None


async def named_readable(service: Service, request: Request) -> ObjectInfo:
    """The live object `/{bucket}/{name…}` names, for a caller that may read the bucket."""
    bucket, name = bucket_and_name(request.path_params["bucket"], request.path_params["name"])
    caller = await service.caller(request)
    check_bucket_read(caller, service.config, bucket)
    info = await service.named(bucket, name)
    if info is None:
        raise not_found(f"nothing is named {bucket}/{name}")
    return info


def bucket_and_name(bucket: str, name: str) -> tuple[str, str]:
    try:
        check_bucket(bucket)
        split_name(name)
    except BadInput as error:
        raise bad_request("name_invalid", str(error)) from None
    return bucket, name


async def by_id(request: Request) -> Response:
    service: Service = request.app.state.service
    object_id = object_id_of(request.path_params["id"])
    query = request.query_params if request.scope["query_string"] else None
    if query is not None and ("signature" in query or "expires" in query):
        signing.check(service.secret, object_id, query.get("expires", ""), query.get("signature", ""), time.time())
        info = await service.live(object_id)
        if info is None:
            raise not_found()
        remaining = max(0, min(YEAR, int(query["expires"]) - int(time.time())))
        return blob_response(request, service, info, f"private, max-age={remaining}")
    caller = await service.caller(request)
    info = await service.live(object_id)
    if info is None or not caller.may_read(service.config, info.bucket):
        raise hidden(caller)
    public = service.config.bucket(info.bucket).public
    return blob_response(request, service, info, f"public, {IMMUTABLE}" if public else "private, no-cache")


async def by_name(request: Request) -> Response:
    service: Service = request.app.state.service
    if request.path_params["bucket"] == "by-id":  # /assets/by-id/a%2Fb: an id with a '/', not a name
        raise bad_request("id_invalid", f"not an object id: {request.path_params['name'][:80]!r}")
    info = await named_readable(service, request)
    public = service.config.bucket(info.bucket).public
    return blob_response(request, service, info, "public, no-cache" if public else "private, no-cache")


_ASKED = frozenset((b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"range", b"if-range"))
_FIXED = [(b"x-content-type-options", b"nosniff"), (b"content-security-policy", b"sandbox")]


def asked(scope: Scope) -> dict[str, str]:
    """The request's conditional and range headers (the first of each), in one pass over them
    (a `Headers.get` scans them all each time, and an answer asks for six)."""
    found: dict[str, str] = {}
    for key, value in scope["headers"]:
        if key in _ASKED and key.decode() not in found:
            found[key.decode()] = value.decode("latin-1")
    return found


def blob_response(request: Request, service: Service, info: ObjectInfo, cache: str) -> Response:
    """The answer with the object's bytes (or nginx's redirect to them), its headers built as
    raw bytes pairs: Starlette's `Response` builds them from a dict through `MutableHeaders`."""
    etag = f'"{info.hash}"'
    headers = [(b"etag", etag.encode()), (b"last-modified", http_date(info.created_at).encode()),
               (b"cache-control", cache.encode()), *_FIXED]
    conditions = asked(request.scope) if request.scope["headers"] else {}
    decided = check_preconditions(conditions, etag, info.created_at, request.method) if conditions else None
    if decided == 304:
        return HeadersOnly(304, [*headers, (b"accept-ranges", b"bytes")])
    if decided == 412:
        raise HttpError(412, "precondition_failed", "the object does not match If-Match / If-Unmodified-Since")
    part = choose_slice(conditions, info.size, etag, info.created_at)  # 416 raised here, in either mode
    download = bool(request.scope["query_string"]) and request.query_params.get("download") == "1"
    headers.append((b"content-disposition", content_disposition(info.filename, download).encode()))
    # a stored type with a control character (allowed after ';') must not reach a header
    plain = info.content_type.isascii() and info.content_type.isprintable()
    headers.append((b"content-type", info.content_type.encode() if plain else b"application/octet-stream"))
    accel = service.config.serve.accel_redirect
    relative = blob_relative(info.hash)
    if accel is not None:  # nginx sends the file, answers the range and adds Accept-Ranges
        headers += [(b"x-accel-redirect", (accel + relative).encode("latin-1")), (b"content-length", b"0")]
        return HeadersOnly(200, headers)
    headers.append((b"accept-ranges", b"bytes"))
    if part.partial:
        headers.append((b"content-range", f"bytes {part.start}-{part.start + part.length - 1}/{info.size}".encode()))
    try:
        fd = os.open(f"{service.blobs}/{relative}", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise HttpError(500, "content_missing", f"the content of {info.id} is missing from the store; run 'assetfs fsck'")
    return BlobResponse(fd, part, headers, request.method == "HEAD", service)


class HeadersOnly(Response):
    """An answer with no body and headers given as raw pairs."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code, self.body, self.background = status, b"", None
        self.raw_headers = headers


class BlobResponse(HeadersOnly):
    """A slice of an open blob file, sent by `__call__` after the headers; the file is closed
    when the body has been sent."""

    def __init__(self, fd: int, part: Slice, headers: list[tuple[bytes, bytes]], head: bool, service: Service) -> None:
        super().__init__(206 if part.partial else 200, [*headers, (b"content-length", str(part.length).encode())])
        self.fd, self.part, self.head, self.service = fd, part, head, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if self.head or self.part.length == 0:
                await send({"type": "http.response.body", "body": b""})
                return
            if self.part.length <= SMALL_BODY:
                await send({"type": "http.response.body", "body": os.pread(self.fd, self.part.length, self.part.start)})
                return
            loop = asyncio.get_running_loop()
            offset, end = self.part.start, self.part.start + self.part.length
            while offset < end:
                count = min(CHUNK, end - offset)
                data = await loop.run_in_executor(self.service.read_pool, os.pread, self.fd, count, offset)
                if not data:
                    raise OSError(f"blob file shorter than its catalog size at offset {offset}")
                offset += len(data)
                await asyncio.wait_for(send({"type": "http.response.body", "body": data, "more_body": offset < end}),
                                       SEND_TIMEOUT)
        finally:
            os.close(self.fd)
