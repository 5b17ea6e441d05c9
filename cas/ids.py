"""Object ids: time-ordered UUIDs (version 7), so new rows land at the end of indexes."""

import os
import re
import threading
import time
import uuid

from cas.errors import BadInput


CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_lock = threading.Lock()
_last: tuple[int, int] = (0, 0)  # (milliseconds, 74-bit sequence) of the last id made here


def _random_bits(count: int) -> int:
    """`count` random bits from the OS (what `secrets.randbits` gives, without importing
    `secrets`, whose hmac and hashlib every command would pay for)."""
    return int.from_bytes(os.urandom((count + 7) // 8), "big") >> (-count % 8)


def new_object_id() -> str:
    """A UUIDv7: 48 bits of Unix milliseconds, then 74 bits that start random each millisecond
    and count up within it (RFC 9562, method 2), so ids made here are strictly increasing."""
    global _last
    with _lock:
        millis = time.time_ns() // 1_000_000
        last_millis, last_sequence = _last
        if millis > last_millis:
            sequence = _random_bits(73)  # top bit clear: room to count up
        else:
            millis, sequence = last_millis, last_sequence + 1
            if sequence >= 2**74:
                millis, sequence = millis + 1, _random_bits(73)
        _last = (millis, sequence)
    value = (millis & (2**48 - 1)) << 80
    value |= 0x7 << 76
    value |= (sequence >> 62) << 64
    value |= 0b10 << 62
    value |= sequence & (2**62 - 1)
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


def is_canonical_id(text: str) -> bool:
    """Whether a name is an object id in its canonical form (lower-case, hyphenated: what
    `new_object_id` makes and the mount shows as an id folder). Only these names are
    reserved at a bucket's top; other spellings that `uuid.UUID` accepts (32 hex digits,
    `{…}`, `urn:uuid:…`, upper case) are ordinary names (docs/fuse.md)."""
    return CANONICAL_ID.fullmatch(text) is not None
