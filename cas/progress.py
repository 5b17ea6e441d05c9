"""A progress bar for long puts, shown only when stderr is a terminal."""

import sys
import time
from typing import BinaryIO

SHOW_ABOVE_BYTES = 64 * 1024 * 1024
SHOW_ABOVE_FILES = 20


def wanted(total_bytes: int, files: int) -> bool:
    return sys.stderr.isatty() and (total_bytes > SHOW_ABOVE_BYTES or files > SHOW_ABOVE_FILES)


def human_bytes(count: float) -> str:
    """`512 B`, `3.4 KiB`, `1.2 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class ByteBar:
    """One status line on stderr: `storing [####    ] 1.2 GiB / 4.0 GiB  85.3 MiB/s  0:34 left`.

    Redrawn at most every REDRAW seconds; `clear` wipes it so that a result line can be
    printed (the next update draws it again below). Does nothing when not `shown`."""

    REDRAW = 0.2
    WIDTH = 24

    def __init__(self, total: int, shown: bool, label: str = "storing") -> None:
        self.total = total
        self.shown = shown
        self.label = label
        self.done = 0
        self.started = time.monotonic()
        self.drawn_at = 0.0

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.shown and now - self.drawn_at >= self.REDRAW:
            self.drawn_at = now
            sys.stderr.write("\r\033[K" + self.line(now))
            sys.stderr.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        filled = min(self.WIDTH, int(self.WIDTH * self.done / self.total)) if self.total else self.WIDTH
        text = (f"{self.label} [{'#' * filled}{' ' * (self.WIDTH - filled)}] "
                f"{human_bytes(self.done)} / {human_bytes(self.total)}  {human_bytes(rate)}/s")
        if rate > 0 and self.total > self.done:
            left = int((self.total - self.done) / rate)
            text += f"  {left // 60}:{left % 60:02d} left"
        return text

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.drawn_at = 0.0  # the next update draws it again at once


class CountingReader:
    """Wraps a binary stream and advances a progress bar by the bytes read through it.

    `tell` and `fileno` pass through, so the store can see a regular file behind it
    (and skip copying content it has already); `finish` accounts for bytes never read."""

    def __init__(self, stream: BinaryIO, bar: ByteBar) -> None:
        self.stream = stream
        self.bar = bar
        self.counted = 0

    def readinto(self, buffer: memoryview) -> int:
        count = self.stream.readinto(buffer)
        if count:
            self.counted += count
            self.bar.update(count)
        return count

    def tell(self) -> int:
        return self.stream.tell()

    def fileno(self) -> int:
        return self.stream.fileno()

    def finish(self, size: int) -> None:
        if size > self.counted:
            self.bar.update(size - self.counted)
            self.counted = size
