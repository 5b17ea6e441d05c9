"""Larger reads. The kernel reads a FUSE file ahead in steps of the mount's own
`read_ahead_kb` (128 KiB by default, so sequential reads reach the daemon as 128–256 KiB
requests). pyfuse3 gives no access to libfuse's `max_readahead`, but root may raise the
mount's readahead in sysfs; then they arrive as 1 MiB requests, the most FUSE sends at once.
Other users keep the kernel's default."""

from __future__ import annotations

from pathlib import Path

READ_AHEAD_KIB = 1024
BDI = Path("/sys/class/bdi")


def raise_read_ahead(device: str) -> bool:
    """Set the readahead of the mount whose device is `device` ('major:minor'); False when
    this process may not."""
    try:
        (BDI / device / "read_ahead_kb").write_text(f"{READ_AHEAD_KIB}\n")
    except OSError:
        return False
    return True
