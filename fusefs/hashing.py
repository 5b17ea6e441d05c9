"""Hashing a staged file while its writes arrive, so that close() does not read it again.

`cp`, `rsync` and `tar` write a new file from its first byte to its last, in order. Each such
write is handed to one hashing thread (shared by the mount) right after it reached the staged
file, and the FUSE reply does not wait for it: BLAKE3 of write n runs while the kernel brings
write n+1. Any other pattern — a write that is not at the end of what was hashed, a truncate
to anything but 0, a staged copy that starts with the old content (copy-on-write) — breaks
the sequence, and the commit hashes the file whole (`blobtree.seal_staged`).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import blake3

MAX_QUEUED = 16  # updates of one file waiting for the hashing thread before a write waits too
INLINE_MAX = 64 * 1024  # a write this small is hashed at once: handing it over costs more

_hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assetfs-hash")


class SequentialHash:
    """BLAKE3 of a file written front to back; `broken` once a write comes out of order."""

    def __init__(self, broken: bool = False) -> None:
        self._hasher = blake3.blake3()
        self._queued: deque[Future] = deque()
        self.length = 0  # bytes handed to the hasher, which are the file's first bytes
        self.broken = broken

    def wrote(self, offset: int, data: bytes) -> None:
        """`data` was written at `offset`. Blocks only when the hasher is far behind; call it
        in a worker thread, in the order of the writes."""
        if self.broken:
            return
        if offset != self.length:
            self.broken = True
            return
        self.length += len(data)
        if len(data) <= INLINE_MAX and not self._queued:
            self._hasher.update(data)
            return
        self._queued.append(_hashing.submit(self._hasher.update, data))
        while len(self._queued) > MAX_QUEUED:
            self._queued.popleft().result()

    def hex_digest(self, size: int) -> str | None:
        """The file's hash when all `size` bytes were hashed in order, else None. Blocks until
        the hashing thread has caught up; call it in a worker thread."""
        while self._queued:
            self._queued.popleft().result()
        if self.broken or self.length != size:
            return None
        return self._hasher.hexdigest()
