"""HTTP errors with a stable machine-readable `code` (docs/http.md lists them all).

Every error the server answers is `{"error": {"code": ..., "message": ...}}` with the status
of its class; clients match on `code`, never on the message.
"""

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response

from cas.errors import StoreError


class HttpError(Exception):
    """An answer other than success: status, stable code, one-line message, extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def unauthorized(message: str = "this needs a bearer token or a signed URL") -> HttpError:
    return HttpError(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="assetfs"'})


def forbidden(code: str, message: str) -> HttpError:
    return HttpError(403, code, message)


def not_found(message: str = "no such object") -> HttpError:
    return HttpError(404, "not_found", message)


def bad_request(code: str, message: str) -> HttpError:
    return HttpError(400, code, message)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error_response(error: HttpError, head: bool = False) -> Response:
    body = b"" if head else error_body(error.code, error.message)
    response = Response(body, status_code=error.status, media_type="application/json", headers=error.headers)
    if head:
        response.headers["content-length"] = str(len(error_body(error.code, error.message)))
    return response


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status_code=status, media_type="application/json")


def answer_for(error: Exception, head: bool) -> Response | None:
    """The JSON answer to an error a handler raised (ours, Starlette's "no route" and "wrong
    method", a store failure); None for any other, which is a bug (500)."""
    if isinstance(error, HttpError):
        return error_response(error, head=head)
    if isinstance(error, HTTPException):  # Starlette's own answers
        code = {404: "no_route", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(HttpError(error.status_code, code, str(error.detail), dict(error.headers or {})), head=head)
    if isinstance(error, StoreError):
        return error_response(HttpError(500, "store_error", str(error)), head=head)
    return None
