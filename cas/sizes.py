"""Sizes as people write them in configuration: `8MiB`, `512K`, `100M`, `10G`, `1TiB` (powers
of 1024; `B`, `iB` optional), a string of bytes (`"0"`), or a whole number of bytes."""

import re

from cas.errors import BadInput

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d{1,15})\s*([kmgt]?)(?:i?b)?")


def parse_size(value: object, what: str = "size", minimum: int = 1) -> int:
    """Bytes in a size; BadInput names `what` when the value is not one, or is below `minimum`."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip().lower())):
        size = int(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise BadInput(f"{what} must be a size such as '512K', '8MiB' or '10G', got {value!r}")
    if size < minimum:
        raise BadInput(f"{what} must be at least {minimum} byte{'' if minimum == 1 else 's'}, got {value!r}")
    return size


def format_size(size: int) -> str:
    """The shortest exact form (`10G`, `1536K`), else bytes."""
    for unit in ("t", "g", "m", "k"):
        if size and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit.upper()}"
    return str(size)
