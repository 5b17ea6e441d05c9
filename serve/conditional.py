"""Conditional and range requests on immutable content (RFC 9110 sections 13 and 14).

An object's content never changes: its strong validator is its BLAKE3 hash, its
Last-Modified the time it was stored. Only a single byte range is served; a request for
several gets the whole body (RFC 9110 lets a server ignore Range).
"""

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import quote

from serve.errors import HttpError

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9!#$&+.^_`|~ ()\[\]{}=,;@-]")


@dataclass(frozen=True)
class Slice:
    """The bytes to send: [start, start + length)."""

    start: int
    length: int
    partial: bool  # a 206 with Content-Range


def http_date(epoch: float) -> str:
    return _http_date(int(epoch))


@functools.lru_cache(maxsize=4096)  # every answer formats its object's date: the hot ones are few
def _http_date(second: int) -> str:
    return formatdate(second, usegmt=True)


def _parse_date(value: str) -> int | None:
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _tags(value: str) -> list[str]:
    return [tag.strip() for tag in value.split(",") if tag.strip()]


def _strong_match(value: str, etag: str) -> bool:
    return any(tag == "*" or tag == etag for tag in _tags(value))


def _weak_match(value: str, etag: str) -> bool:
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in _tags(value))


def check_preconditions(headers: Mapping[str, str], etag: str, modified: float, method: str) -> int | None:
    """The status the preconditions decide (304 or 412), or None to go on (RFC 9110 13.2.2)."""
    get = headers.get
    modified_second = int(modified)
    if_match = get("if-match")
    if if_match is not None:
        if not _strong_match(if_match, etag):
            return 412
    else:
        since = get("if-unmodified-since")
        date = _parse_date(since) if since is not None else None
        if date is not None and modified_second > date:
            return 412
    if_none_match = get("if-none-match")
    if if_none_match is not None:
        if _weak_match(if_none_match, etag):
            return 304 if method in ("GET", "HEAD") else 412
    elif method in ("GET", "HEAD"):
        since = get("if-modified-since")
        date = _parse_date(since) if since is not None else None
        if date is not None and modified_second <= date:
            return 304
    return None


def choose_slice(headers: Mapping[str, str], size: int, etag: str, modified: float) -> Slice:
    """The part of the content to send for a GET: all of it, or the single range asked for.

    Raises HttpError 416 for a malformed or unsatisfiable single range.
    """
    get = headers.get
    whole = Slice(0, size, partial=False)
    value = get("range")
    if value is None:
        return whole
    if_range = get("if-range")
    if if_range is not None:
        if if_range.startswith('"') or if_range.startswith("W/"):
            if if_range != etag:
                return whole
        else:
            date = _parse_date(if_range)
            if date is None or int(modified) != date:
                return whole
    value = value.strip()
    if not value.lower().startswith("bytes="):
        return whole  # a unit we do not know: ignored (RFC 9110 14.2)
    if "," in value:
        return whole  # several ranges: the whole body instead
    unsatisfiable = {"Content-Range": f"bytes */{size}"}
    match = _RANGE.fullmatch(value[:6].lower() + value[6:].replace(" ", ""))
    if match is None or (match.group(1) == "" and match.group(2) == ""):
        raise HttpError(416, "range_malformed", f"malformed Range header {value[:100]!r}; expected bytes=FIRST-LAST",
                        unsatisfiable)
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            raise HttpError(416, "range_not_satisfiable", f"range {value!r} selects nothing of {size} bytes",
                            unsatisfiable)
        count = min(count, size)
        return Slice(size - count, count, partial=True)
    start = int(first)
    end = size - 1 if last == "" else int(last)
    if last != "" and end < start:
        raise HttpError(416, "range_malformed", f"malformed Range header {value[:100]!r}: the last byte is before the first",
                        unsatisfiable)
    if start >= size:
        raise HttpError(416, "range_not_satisfiable", f"range {value!r} starts past the end ({size} bytes)",
                        unsatisfiable)
    end = min(end, size - 1)
    return Slice(start, end - start + 1, partial=True)


@functools.lru_cache(maxsize=4096)
def content_disposition(filename: str, attachment: bool) -> str:
    """`inline` or `attachment` with the filename as RFC 6266 `filename*` (UTF-8) and an ASCII
    `filename` fallback for old clients."""
    fallback = _SAFE_FILENAME.sub("_", filename) or "download"
    kind = "attachment" if attachment else "inline"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
