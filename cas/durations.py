"""Durations as people write them in configuration and options: `90s`, `15m`, `2h`, `7d`, `1w`, `1h30m`.

No duration is longer than MAX_DURATION (100 years): a longer one is a typo, and times built
from it (an expiry, a purge time, a sleep) would overflow the date and timer functions that
later read them (docs/design.md invariant 8)."""

import re

from cas.errors import BadInput

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = 100 * 365 * 86400  # seconds in 100 years (of 365 days)
MAX_DURATION_TEXT = "100 years"
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
    if total > MAX_DURATION:  # also inf, from a number with hundreds of digits
        raise BadInput(f"{what} must be at most {MAX_DURATION_TEXT}, got {_shown(text)}")
    return total


def _shown(text: str) -> str:
    """The text in an error message: a 400-digit number is cut, so the message stays one line."""
    return repr(text) if len(text) <= 40 else repr(text[:20] + "…" + text[-8:])


def format_duration(seconds: float) -> str:
    """The shortest exact form of a whole number of seconds (`7d`, `90m`), else seconds."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
