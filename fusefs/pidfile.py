"""The mount daemon's pid file (`--pid-file`, `pidfile=`): for a logrotate `postrotate`
that sends SIGHUP (docs/assetfs.logrotate). Written whole once the mount is ready (a
temporary file renamed over the path), removed when the daemon ends if it still names it.
A path that cannot be written is a one-line error before anything is mounted."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cas.errors import BadInput

log = logging.getLogger("assetfs.mount")


def check(path: Path | None) -> None:
    """BadInput when the pid file could not be written (nothing existing is touched)."""
    if path is None:
        return
    if path.is_dir():
        raise BadInput(f"cannot write the pid file {path}: it is a folder")
    try:
        temporary = _write_temporary(path)
        temporary.unlink()
    except OSError as error:
        raise BadInput(f"cannot write the pid file {path}: {error.strerror}") from None


def record(path: Path | None) -> None:
    """Write this process's pid; a failure now (checked before: the folder changed
    meanwhile) is logged and the mount goes on."""
    if path is None:
        return
    try:
        os.replace(_write_temporary(path), path)
    except OSError as error:
        log.warning("could not write the pid file %s: %s", path, error.strerror)


def remove(path: Path | None) -> None:
    """Remove the pid file when it still names this process (a later mount may own it)."""
    if path is None:
        return
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


def _write_temporary(path: Path) -> Path:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        temporary.write_text(f"{os.getpid()}\n")
    except OSError:
        temporary.unlink(missing_ok=True)
        raise
    return temporary
