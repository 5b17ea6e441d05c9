"""A progress bar for long puts, shown only when stderr is a terminal."""

import sys
from typing import BinaryIO

import click

SHOW_ABOVE_BYTES = 64 * 1024 * 1024
SHOW_ABOVE_FILES = 20


def wanted(total_bytes: int, files: int) -> bool:
    return sys.stderr.isatty() and (total_bytes > SHOW_ABOVE_BYTES or files > SHOW_ABOVE_FILES)


class CountingReader:
    """Wraps a binary stream and advances a progress bar by the bytes read through it.

    `tell` and `fileno` pass through, so the store can see a regular file behind it
    (and skip copying content it has already); `finish` accounts for bytes never read."""

    def __init__(self, stream: BinaryIO, bar: "click._termui_impl.ProgressBar") -> None:
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
