"""The Linux calls assetfs needs that Python's `os` module lacks: syncfs(2) and
sync_file_range(2) for the store, umount2(2) for the mount, mallopt(3) for the HTTP server;
called through libc with ctypes.

libc is taken from the process itself (`dlopen(NULL)`), not looked up by name:
`ctypes.util.find_library` runs `ldconfig -p` in a subprocess, which costs every command a
fork and an exec before it does anything.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syncfs.argtypes = [ctypes.c_int]
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]

SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writeback of the range's dirty pages, wait for none
UMOUNT_NOFOLLOW = 8  # <sys/mount.h>: do not follow a symlink at the mount point's path


def _raise_errno() -> None:
    error = ctypes.get_errno()
    raise OSError(error, os.strerror(error))


def syncfs(fd: int) -> None:
    """Flush everything of the filesystem that holds the open file `fd`."""
    if _libc.syncfs(fd) != 0:
        _raise_errno()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing the dirty pages of `length` bytes of `fd` from `offset` to the disk, and
    return without waiting for them. It promises nothing about durability (only fsync does);
    what it buys is that a later fsync finds the data written already. Best effort: a
    filesystem that refuses it (EINVAL, ENOSYS, ESPIPE) is left to its own writeback."""
    _libc.sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def umount2(path: str, flags: int) -> None:
    """Unmount the filesystem at `path` (root only); OSError with the call's errno (EBUSY:
    still in use)."""
    if _libc.umount2(os.fsencode(path), flags) != 0:
        _raise_errno()


def mallopt(parameter: int, value: int) -> bool:
    """Set one of the C allocator's parameters; False where the C library has no mallopt
    (not glibc) or refused it."""
    function = getattr(_libc, "mallopt", None)
    return function is not None and bool(function(parameter, value))
