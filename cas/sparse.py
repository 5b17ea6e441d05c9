"""Sparse files: copy and hash only the data, keep the holes as holes.

A file with a 1 GiB hole (`truncate -s`, a write far past the end, fsstress's range ops)
holds a few blocks on disk. Its staged copy and its blob must hold no more: copying it with
read/write or copy_file_range writes the hole out as zeros. So copies and hashes walk the
file's data extents with lseek(SEEK_DATA/SEEK_HOLE): data is read (and written at the same
offset), a hole is skipped in the copy and hashed as the zeros it reads as. The hash is of
the logical content, so a sparse file and the same bytes written out have one hash (and
deduplicate). Where the filesystem cannot say (EINVAL), the whole file counts as data.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator

import blake3

CHUNK = 4 * 1024 * 1024
_ZEROS = memoryview(bytes(CHUNK))


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The (start, end) ranges of the first `size` bytes of `fd` that hold data, in order;
    the rest are holes. The file should not change meanwhile (a change shows as a short read
    to whoever reads the ranges)."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:  # nothing but a hole up to the end
                return
            if error.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # the filesystem cannot tell
                yield offset, size
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        offset = end


def read_exactly(fd: int, buffer: memoryview, offset: int) -> None:
    """Fill `buffer` from `fd` at `offset`; ShrankError when the file ends first."""
    filled = 0
    while filled < len(buffer):
        count = os.preadv(fd, [buffer[filled:]], offset + filled)
        if count == 0:
            raise ShrankError(offset + filled)
        filled += count


class ShrankError(OSError):
    """The file ended before the size it had when the copy or hash started (EIO)."""

    def __init__(self, at: int) -> None:
        super().__init__(errno.EIO, f"the file ended at byte {at}, before its size")


def hash_zeros(hasher: "blake3.blake3", length: int) -> None:
    """Feed `length` zero bytes (a hole) to `hasher` without reading anything."""
    while length > 0:
        step = min(length, CHUNK)
        hasher.update(_ZEROS[:step])
        length -= step


def hash_file(fd: int, size: int) -> str:
    """BLAKE3 of the first `size` bytes of `fd`, reading only its data extents."""
    return _hash_extents(fd, size)


def copy_hashing(source: int, target: int, size: int) -> str:
    """Copy the first `size` bytes of `source` into the empty `target` as `copy_file` does
    (holes stay holes) and return their BLAKE3, reading each data byte once."""

    def write(chunk: memoryview, offset: int) -> None:
        written = 0
        while written < len(chunk):
            written += os.pwrite(target, chunk[written:], offset + written)

    hash_hex = _hash_extents(source, size, write)
    os.ftruncate(target, size)
    return hash_hex


def _hash_extents(fd: int, size: int, each_chunk: Callable[[memoryview, int], None] | None = None) -> str:
    """BLAKE3 of the first `size` bytes of `fd`, its holes hashed as zeros without reading;
    each chunk of data read is also given to `each_chunk` with its offset."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    buffer = memoryview(bytearray(min(CHUNK, max(size, 1))))
    position = 0
    for start, end in data_extents(fd, size):
        hash_zeros(hasher, start - position)
        while start < end:
            chunk = buffer[:min(len(buffer), end - start)]
            read_exactly(fd, chunk, start)
            hasher.update(chunk)
            if each_chunk is not None:
                each_chunk(chunk, start)
            start += len(chunk)
        position = end
    hash_zeros(hasher, size - position)
    return hasher.hexdigest()


def has_holes(fd: int, size: int) -> bool:
    """Whether the first `size` bytes of `fd` are anything but one stretch of data."""
    extents = data_extents(fd, size)
    return next(extents, None) != (0, size)


def copy_file(source: int, target: int, size: int) -> None:
    """Copy the first `size` bytes of `source` into the empty `target` at the same offsets,
    data extents only; `target` ends up `size` bytes long, with holes where `source` has them.
    copy_file_range within one filesystem, pread/pwrite across filesystems."""
    for start, end in data_extents(source, size):
        offset = start
        while offset < end:
            try:
                copied = os.copy_file_range(source, target, min(end - offset, 1 << 30), offset, offset)
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                _copy_plain(source, target, offset, end)
                break
            if copied == 0:
                raise ShrankError(offset)
            offset += copied
    os.ftruncate(target, size)


def _copy_plain(source: int, target: int, offset: int, end: int) -> None:
    buffer = memoryview(bytearray(min(CHUNK, end - offset)))
    while offset < end:
        chunk = buffer[:min(len(buffer), end - offset)]
        read_exactly(source, chunk, offset)
        written = 0
        while written < len(chunk):
            written += os.pwrite(target, chunk[written:], offset + written)
        offset += len(chunk)
