"""Durations as people write them in configuration and options: `90s`, `15m`, `2h`, `7d`, `1w`, `1h30m`."""

import re

from cas.errors import BadInput

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in a duration string; BadInput names `what` when the text is not one."""
    if not isinstance(text, str):
        raise BadInput(f"{what} must be a duration such as '2h' or '7d', got {text!r}")
    compact = text.strip().lower()
    position, total = 0, 0.0
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not compact or position != len(compact):
        raise BadInput(f"{what} must be a duration such as '30s', '15m', '2h' or '7d', got {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact form of a whole number of seconds (`7d`, `90m`), else seconds."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
