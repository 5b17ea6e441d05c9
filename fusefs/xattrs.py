"""Extended attributes of the mount.

Object files (/<bucket>/<id>/<filename>) carry read-only attributes made from the catalog:

    user.assetfs.id, .bucket, .hash (BLAKE3-256, hex), .size, .content_type,
    .created_at (ISO 8601, UTC)
    user.assetfs.meta.<key>     one per metadata entry of the object

Files of the named tree carry the same attributes, of the object their name refers to (its
content as last committed), so that a name leads to its object id. These are the store's and
follow the content: setting or removing one of them on a named file succeeds and changes
nothing, since tools that copy or sync attributes (`cp -a`, `rsync -X`, which removes what its
source lacks) would otherwise fail on every file; they win over a stored attribute of the same
name. Besides them, files and folders of the named tree carry whatever `user.*` attributes
were set on them (stored in `nodes.xattrs`), `user.assetfs.<other>` included; other
namespaces are refused with ENOTSUP.
"""

from __future__ import annotations

import errno

import pyfuse3

from cas.model import ObjectInfo, iso_time

PREFIX = "user.assetfs."
META_PREFIX = PREFIX + "meta."
USER = b"user."
MAX_NAME = 255
OBJECT_FIELDS = frozenset(PREFIX + field for field in ("id", "bucket", "hash", "size", "content_type", "created_at"))


def object_xattrs(info: ObjectInfo) -> dict[str, bytes]:
    found = {
        PREFIX + "id": info.id, PREFIX + "bucket": info.bucket, PREFIX + "hash": info.hash,
        PREFIX + "size": str(info.size), PREFIX + "content_type": info.content_type,
        PREFIX + "created_at": iso_time(info.created_at) or "",
    }
    found.update({META_PREFIX + key: value for key, value in info.metadata.items()})
    return {name: value.encode("utf-8") for name, value in found.items()}


def is_computed(name: str) -> bool:
    """Whether an attribute name is one the store makes from an object (`object_xattrs`)."""
    return name in OBJECT_FIELDS or name.startswith(META_PREFIX)


def named_xattrs(stored: dict[str, bytes], info: ObjectInfo | None) -> dict[str, bytes]:
    """A named file's attributes: those set on it, and its object's, which win."""
    if info is None:
        return stored
    return {**stored, **object_xattrs(info)}


def user_name(name: bytes) -> str:
    """A settable attribute name as text: `user.*` only (ENOTSUP), valid UTF-8 (EINVAL)."""
    if not name.startswith(USER) or len(name) == len(USER):
        raise pyfuse3.FUSEError(errno.ENOTSUP)
    if len(name) > MAX_NAME:
        raise pyfuse3.FUSEError(errno.ERANGE)
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        raise pyfuse3.FUSEError(errno.EINVAL) from None


def lookup_name(name: bytes) -> str | None:
    """An attribute name to look up as text; None when it cannot exist here."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return None
