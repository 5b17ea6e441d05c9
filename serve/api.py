"""The JSON API under /v1: the CLI's verbs, one route each (docs/http.md)."""

import asyncio
import dataclasses
import errno
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cas import names
from cas.durations import parse_duration
from cas.errors import AssetfsError, BadInput, NotFound
from cas.model import ObjectInfo, PutResult
from cas.validate import check_bucket, check_content_type, check_filename, check_metadata, split_name
from serve import signing
from serve.access import Caller, check_bucket_read, check_bucket_write, hidden
from serve.assets import named_readable, object_id_of
from serve.body import BodyStream, RawBody, Rejected, parse_digests
from serve.errors import HttpError, bad_request, json_response, not_found, unauthorized
from serve.multipart import MultipartBody
from serve.service import Service

DEFAULT_PAGE = 100
MAX_PAGE = 1000
DEFAULT_URL_LIFETIME = 3600.0
MAX_URL_LIFETIME = 7 * 86400.0
_EXTENSION = re.compile(r"[a-z0-9]{1,10}")


def _service(request: Request) -> Service:
    return request.app.state.service


def object_record(service: Service, info: ObjectInfo, **extra: Any) -> dict[str, Any]:
    """`stat --json`'s fields, plus the object's URLs: `url` (by id) and, for a public
    bucket, `blob_url` (content-addressed, served by nginx alone; docs/http.md)."""
    record = info.to_json()
    record["name"] = info.names[0] if info.names else None
    base = (service.config.serve.base_url or "").rstrip("/")
    record["url"] = f"{base}/assets/by-id/{info.id}"
    if service.config.bucket(info.bucket).public:
        suffix = info.filename.rsplit(".", 1)[-1].lower() if "." in info.filename else ""
        record["blob_url"] = f"{base}/blobs/{info.hash}.{suffix if _EXTENSION.fullmatch(suffix) else 'bin'}"
    record.update(extra)
    return record


def _put_record(service: Service, result: PutResult) -> dict[str, Any]:
    """What `put --json` prints, and the URLs."""
    info = result.object
    record = {"id": info.id, "bucket": info.bucket, "hash": info.hash, "size": info.size,
              "content_type": info.content_type, "name": result.name, "deduplicated": result.deduplicated}
    full = object_record(service, info)
    record["url"] = full["url"]
    if "blob_url" in full:
        record["blob_url"] = full["blob_url"]
    return record


def _invalid(error: AssetfsError) -> HttpError:
    return bad_request("invalid", str(error))


# uploading -----------------------------------------------------------------------------------


class PutOptions:
    """The options of an upload, from the query, `X-Assetfs-*` headers and form fields (in
    that order; later ones win). Each is checked before the content is stored."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.filename: str | None = None
        self.content_type: str | None = None
        self.expires_in: str | None = None
        self.metadata: dict[str, str] = {}

    def take(self, items: list[tuple[str, str]]) -> None:
        for key, value in items:
            key = key.lower() if not key.startswith("meta.") else key
            if key.startswith("meta."):
                self.metadata[key[5:]] = value
            elif key in ("name", "filename", "content_type", "expires_in"):
                setattr(self, key, value)
            else:
                raise bad_request("invalid", f"unknown upload option {key!r} (known: name, filename, content_type, "
                                  "expires_in, meta.KEY)")

    def checked(self) -> tuple[str | None, str | None, str | None, float | None, dict[str, str]]:
        try:
            if self.name is not None:
                split_name(self.name)
            if self.filename is not None:
                check_filename(self.filename)
            if self.content_type is not None:
                check_content_type(self.content_type)
            check_metadata(self.metadata)
            expires_at = None if self.expires_in is None else time.time() + parse_duration(self.expires_in, "expires_in")
        except BadInput as error:
            raise _invalid(error) from None
        return self.name, self.filename, self.content_type, expires_at, self.metadata


def _utf8(value: str) -> str:
    """A header value as the client sent it, when that was UTF-8 (ASGI hands over latin-1)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _header_options(request: Request) -> list[tuple[str, str]]:
    found = []
    for key, value in request.headers.items():
        value = _utf8(value)
        if key.startswith("x-assetfs-meta-"):
            found.append(("meta." + key[len("x-assetfs-meta-"):], value))
        elif key in ("x-assetfs-name", "x-assetfs-filename", "x-assetfs-expires-in"):
            found.append((key[len("x-assetfs-"):].replace("-", "_"), value))
    return found


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise bad_request("length_invalid", f"Content-Length {value[:40]!r} is not a number")
    return int(value)


def _bucket_of(request: Request) -> str:
    """The request's `{bucket}`, checked: 400 `name_invalid` otherwise."""
    bucket = request.path_params["bucket"]
    try:
        check_bucket(bucket)
    except BadInput as error:
        raise bad_request("name_invalid", str(error)) from None
    return bucket


async def upload(request: Request) -> Response:
    service = _service(request)
    bucket = _bucket_of(request)
    caller = await service.caller(request)
    check_bucket_write(caller, bucket)
    length = _content_length(request)
    limit = service.config.bucket(bucket).max_size
    if length is not None and limit is not None and length > limit:
        raise HttpError(413, "too_large", f"the body ({length} bytes) is larger than the bucket's max_size ({limit} bytes)")
    digests = parse_digests(request.headers.get("content-digest") or request.headers.get("repr-digest"))
    options = PutOptions()
    options.take(list(request.query_params.multi_items()))
    options.take(_header_options(request))
    options.checked()
    media_type = request.headers.get("content-type", "")
    kind, _, params = media_type.partition(";")
    loop = asyncio.get_running_loop()
    stream = BodyStream(loop, request.receive, limit, length, digests)

    def put() -> PutResult:
        if kind.strip().lower() == "multipart/form-data":
            boundary = _boundary(params)
            body = MultipartBody(stream, boundary)
            body.start()
            options.take(list(body.fields.items()))
            name, filename, content_type, expires_at, metadata = options.checked()
            filename = filename or (name.rsplit("/", 1)[-1] if name else None) or body.filename or "upload"
            content_type = content_type or _given_type(body.file_content_type)
            source = body
        else:
            name, filename, content_type, expires_at, metadata = options.checked()
            filename = filename or (name.rsplit("/", 1)[-1] if name else None) or "upload"
            content_type = content_type or _given_type(media_type)
            source = RawBody(stream)
        return service.store.put(bucket, source, name=name, content_type=content_type, metadata=metadata,
                                 expires_at=expires_at, filename=filename)

    service.uploads_in_flight += 1
    try:
        result = await loop.run_in_executor(service.upload_pool, put)
    except Rejected as rejected:
        raise rejected.error from None
    except AssetfsError as error:
        if stream.rejection is not None:
            raise stream.rejection.error from None
        if getattr(error, "errno", None) == errno.EFBIG:  # the store's own max_size check (typed, by errno)
            raise HttpError(413, "too_large", str(error)) from None
        if isinstance(error, BadInput):
            raise _invalid(error) from None
        raise HttpError(500, "store_error", str(error)) from None
    finally:
        stream.close()
        service.uploads_in_flight -= 1
    return json_response(_put_record(service, result), status=200 if result.deduplicated else 201)


def _boundary(params: str) -> bytes:
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    raise bad_request("multipart_invalid", "multipart/form-data without a boundary")


def _given_type(media_type: str | None) -> str | None:
    """A client's Content-Type, when it says something (octet-stream and form types do not)."""
    if not media_type:
        return None
    value = media_type.strip()
    if value.split(";")[0].strip().lower() in ("application/octet-stream", "application/x-www-form-urlencoded"):
        return None
    try:
        return check_content_type(value)
    except BadInput as error:
        raise _invalid(error) from None


# reading metadata --------------------------------------------------------------------------


async def _readable(service: Service, caller: Caller, object_id: str, with_names: bool = False) -> ObjectInfo:
    info = await service.live(object_id, with_names)
    if info is None or not caller.may_read(service.config, info.bucket):
        raise hidden(caller)
    return info


async def get_object(request: Request) -> Response:
    service = _service(request)
    object_id = object_id_of(request.path_params["id"])
    caller = await service.caller(request)
    info = await _readable(service, caller, object_id, with_names=True)
    holds = await service.call(service.store.holds, info.id)
    return json_response(object_record(service, info, holds=holds))


async def list_objects(request: Request) -> Response:
    service = _service(request)
    bucket = _bucket_of(request)
    after = request.query_params.get("after")
    after = "00000000-0000-0000-0000-000000000000" if after is None else object_id_of(after)
    raw_limit = request.query_params.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise bad_request("limit_invalid", f"limit must be a whole number from 1 to {MAX_PAGE}")
    limit = int(raw_limit)
    caller = await service.caller(request)
    check_bucket_read(caller, service.config, bucket)
    store = service.store

    def page() -> tuple[list[ObjectInfo], dict[str, list[str]]]:
        infos = store.page(bucket, False, after, limit)
        found = store.catalog.run(lambda tx: names.names_of(tx, [info.id for info in infos]), write=False)
        return infos, found

    infos, found = await service.call(page)
    now = time.time()
    records = [object_record(service, dataclasses.replace(info, names=sorted(found.get(info.id, []))))
               for info in infos if info.expires_at is None or info.expires_at > now]
    return json_response({"objects": records, "next": infos[-1].id if len(infos) == limit else None})


async def lookup_name(request: Request) -> Response:
    service = _service(request)
    info = await named_readable(service, request)
    return json_response(object_record(service, info))


# changing ------------------------------------------------------------------------------------


async def _writable(service: Service, caller: Caller, object_id: str, trashed: bool = False) -> ObjectInfo:
    """The object, if the caller may change it; hidden (404/401) when it may not even read it."""
    try:
        info = await service.call(service.store.get_trashed if trashed else service.store.get, object_id)
    except NotFound:
        raise hidden(caller) from None
    if not caller.may_read(service.config, info.bucket):
        raise hidden(caller)
    check_bucket_write(caller, info.bucket)
    return info


async def delete_object(request: Request) -> Response:
    return await _move(request, trashed=False)


async def restore_object(request: Request) -> Response:
    return await _move(request, trashed=True)


async def _move(request: Request, trashed: bool) -> Response:
    """Into the trash (`trashed`: out of it), for a caller that may write the object's bucket."""
    service = _service(request)
    object_id = object_id_of(request.path_params["id"])
    caller = await service.caller(request)
    await _writable(service, caller, object_id, trashed=trashed)
    try:
        info = await service.call(service.store.restore if trashed else service.store.delete, object_id)
    except NotFound:
        raise not_found() from None
    return json_response(object_record(service, info))


async def list_holds(request: Request) -> Response:
    service = _service(request)
    object_id = object_id_of(request.path_params["id"])
    caller = await service.caller(request)
    info = await _readable(service, caller, object_id)
    return json_response({"id": info.id, "holds": await service.call(service.store.holds, info.id)})


async def _hold_change(request: Request, add: bool) -> Response:
    service = _service(request)
    object_id = object_id_of(request.path_params["id"])
    owner = request.path_params["owner"]
    caller = await service.caller(request)
    await _writable(service, caller, object_id)
    try:
        await service.call(service.store.hold if add else service.store.release, object_id, owner)
    except BadInput as error:
        raise _invalid(error) from None
    except NotFound as error:
        raise not_found(str(error)) from None
    return json_response({"id": object_id, "holds": await service.call(service.store.holds, object_id)})


async def add_hold(request: Request) -> Response:
    return await _hold_change(request, add=True)


async def remove_hold(request: Request) -> Response:
    return await _hold_change(request, add=False)


async def signed_url(request: Request) -> Response:
    """A link that works without a token until it expires (`?expires_in=`, default 1h, at
    most 7d and never past the token's own expiry)."""
    service = _service(request)
    object_id = object_id_of(request.path_params["id"])
    try:
        lifetime = parse_duration(request.query_params.get("expires_in", "1h"), "expires_in")
    except BadInput as error:
        raise _invalid(error) from None
    if not 0 < lifetime <= MAX_URL_LIFETIME:
        raise bad_request("invalid", "expires_in must be more than 0s and at most 7d")
    caller = await service.caller(request)
    if caller.token is None:
        raise unauthorized("making a signed URL needs a bearer token that may read the object")
    info = await _readable(service, caller, object_id)
    expires = int(time.time() + lifetime)
    if caller.token is not None and caller.token.expires_at is not None:
        expires = min(expires, int(caller.token.expires_at))
    base = (service.config.serve.base_url or "").rstrip("/")
    url = base + signing.signed_path(service.secret, info.id, expires)
    return json_response({"id": info.id, "url": url, "expires_at": expires})
