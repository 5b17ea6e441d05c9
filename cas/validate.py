"""Checks for every name that comes from outside: buckets, filenames, named paths, metadata.

Each check raises BadInput with a message that says what was wrong, before anything is
written, so bad input changes nothing.
"""

import math
import re

from cas.durations import MAX_DURATION, MAX_DURATION_TEXT
from cas.errors import BadInput
from cas.ids import is_canonical_id

BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
CONTENT_TYPE_PATTERN = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*(;.*)?", re.IGNORECASE)
METADATA_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
MAX_METADATA_BYTES = 64 * 1024


def check_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not BUCKET_PATTERN.fullmatch(bucket):
        raise BadInput(
            f"invalid bucket name {bucket!r}: use 1-63 characters from a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return bucket


def _utf8_length(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadInput(f"{what} {text!r} is not valid UTF-8") from None


def check_filename(filename: str, what: str = "filename") -> str:
    """One path component: no '/', no NUL, not '.' or '..', at most 255 bytes of UTF-8."""
    if not isinstance(filename, str) or filename == "":
        raise BadInput(f"{what} must not be empty")
    if "\0" in filename:
        raise BadInput(f"{what} {filename!r} contains a NUL byte")
    if "/" in filename:
        raise BadInput(f"{what} {filename!r} contains '/'")
    if filename in (".", ".."):
        raise BadInput(f"{what} {filename!r} is not allowed")
    if _utf8_length(filename, what) > MAX_NAME_BYTES:
        raise BadInput(f"{what} {filename[:40]!r}… is longer than {MAX_NAME_BYTES} bytes")
    return filename


ID_VIEW_FOLDER = ".by-id"  # /<bucket>/.by-id/<id>/: where the mount lists a bucket's objects by id


def split_name(name: str) -> list[str]:
    """The components of a name in a bucket's named tree (`photos/2024/cat.jpg`).

    Components are checked like filenames. The first one must not be `.by-id` or an object
    id in its canonical form, because `/<bucket>/.by-id/<id>/` and `/<bucket>/<id>/` are
    where the mount shows objects by id (docs/fuse.md).
    """
    if not isinstance(name, str) or name.strip("/") == "":
        raise BadInput("name must not be empty")
    if "\0" in name:
        raise BadInput(f"name {name!r} contains a NUL byte")
    if _utf8_length(name, "name") > MAX_PATH_BYTES:
        raise BadInput(f"name {name[:40]!r}… is longer than {MAX_PATH_BYTES} bytes")
    parts = name.removeprefix("/").split("/")
    for part in parts:
        if part == "":
            raise BadInput(f"name {name!r} has an empty component ('//' or a trailing '/')")
        check_filename(part, what="name component")
    if is_canonical_id(parts[0]):
        raise BadInput(f"name {name!r} starts with an object id, which would hide that object's folder")
    if parts[0] == ID_VIEW_FOLDER:
        raise BadInput(f"name {name!r} starts with {ID_VIEW_FOLDER}, the folder where the mount shows objects by id")
    return parts


def check_expiry(expires_at: float, now: float) -> float:
    """An expiry time: a finite number of seconds since the epoch, later than `now` and at most
    MAX_DURATION after it (a later one is a typo, and dates that far out cannot be shown)."""
    if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)) or not math.isfinite(expires_at):
        raise BadInput(f"invalid expiry time {expires_at!r}: expected seconds since the epoch")
    if expires_at <= now:
        raise BadInput("the expiry time is in the past")
    if expires_at > now + MAX_DURATION:
        raise BadInput(f"the expiry time is more than {MAX_DURATION_TEXT} away")
    return float(expires_at)


def check_content_type(content_type: str) -> str:
    if not isinstance(content_type, str) or not CONTENT_TYPE_PATTERN.fullmatch(content_type) or "\n" in content_type:
        raise BadInput(f"invalid content type {content_type!r}: expected 'type/subtype', such as 'image/png'")
    return content_type


def check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    if not isinstance(metadata, dict):
        raise BadInput("metadata must be a mapping of names to strings")
    total = 0
    for key, value in metadata.items():
        if not isinstance(key, str) or not METADATA_KEY_PATTERN.fullmatch(key):
            raise BadInput(
                f"invalid metadata key {key!r}: use up to 128 characters from A-Z, a-z, 0-9, '.', '_' and '-'"
            )
        if not isinstance(value, str) or "\0" in value:
            raise BadInput(f"metadata value for {key!r} must be a string without NUL bytes")
        total += len(key) + _utf8_length(value, f"metadata value for {key!r}")
    if total > MAX_METADATA_BYTES:
        raise BadInput(f"metadata is larger than {MAX_METADATA_BYTES // 1024} KiB")
    return metadata
