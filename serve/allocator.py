"""The C allocator's settings for a server process: upload bodies without page faults.

An upload arrives in pieces of up to 256 KiB, each a new bytes object (httptools makes them),
freed once the store copied it. glibc serves blocks that large with a fresh mmap, or returns
the top of its heap to the kernel once 128–512 KiB of it are free (its thresholds adapt), so
nearly every piece lands on pages the kernel must fault in and zero again: about 120,000
page faults and 0.2 s of kernel CPU for a 1 GiB upload (measured, docs/http.md "Uploads").
Here blocks under `MMAP_THRESHOLD` come from the heap, and up to `TRIM_THRESHOLD` of freed
heap is kept for the next pieces: a 1 GiB upload then takes under 10 page faults. The cost is
at most `TRIM_THRESHOLD` of freed memory kept per allocator arena.
"""

from cas import syscalls

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1024 * 1024
TRIM_THRESHOLD = 64 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set glibc's thresholds for this process; False where the C library is not glibc."""
    return syscalls.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and syscalls.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
