"""Object ids: time-ordered UUIDs (version 7), so new rows land at the end of indexes."""

import secrets
import time
import uuid

from cas.errors import BadInput


def new_object_id() -> str:
    """A UUIDv7: 48 bits of Unix milliseconds, then random bits (RFC 9562)."""
    millis = time.time_ns() // 1_000_000
    value = (millis & (2**48 - 1)) << 80
    value |= 0x7 << 76
    value |= secrets.randbits(12) << 64
    value |= 0b10 << 62
    value |= secrets.randbits(62)
    return str(uuid.UUID(int=value))


def parse_object_id(text: str) -> str:
    """The canonical (lower-case, hyphenated) form of an object id, or BadInput."""
    try:
        parsed = uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        raise BadInput(f"not an object id: {text!r} (expected a UUID such as 0190a1b2-…)") from None
    canonical = str(parsed)
    if text.lower() != canonical:
        raise BadInput(f"not an object id: {text!r} (expected the hyphenated UUID form {canonical})")
    return canonical


def looks_like_object_id(text: str) -> bool:
    """Whether a name would be read as an object id (and so would shadow an id folder)."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
