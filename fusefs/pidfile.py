"""The mount daemon's pid file (`--pid-file`, `pidfile=`): for a logrotate `postrotate`
that sends SIGHUP (docs/assetfs.logrotate).

The path is checked before anything is mounted: a folder, a file that is not a pid file
(say the store's assetfs.toml) or the pid file of a running process is refused (one line,
nothing changed); a pid file left by a process that is gone (only a pid, not running) is
replaced. Once the mount is ready the file is created exclusively (O_EXCL, the pid in one
write): it never replaces another's file. At exit it is removed only if it still holds
this process's pid."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cas.errors import BadInput

log = logging.getLogger("assetfs.mount")

LONGEST = 32  # a pid file is a pid and a newline; anything longer is some other file


def check(path: Path | None) -> None:
    """BadInput when the pid file may not or cannot be written (nothing existing is touched)."""
    if path is None:
        return
    refusal = _refusal(path)
    if refusal is not None:
        raise BadInput(refusal)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        _create(temporary)
        temporary.unlink()
    except OSError as error:
        raise BadInput(f"cannot write the pid file {path}: {error.strerror}") from None


def record(path: Path | None) -> None:
    """Create the pid file with this process's pid. A failure now (checked before: the
    folder changed meanwhile, or another mount took the path) is logged and the mount goes
    on; a file that is there is never replaced unless it is a stale pid file."""
    if path is None:
        return
    try:
        try:
            _create(path)
        except FileExistsError:
            refusal = _refusal(path)
            if refusal is not None:
                log.warning("not writing the pid file: %s", refusal)
                return
            path.unlink()  # stale: its process is gone
            _create(path)
    except OSError as error:
        log.warning("could not write the pid file %s: %s", path, error.strerror)


def remove(path: Path | None) -> None:
    """Remove the pid file when it still holds this process's pid (a later mount may own it)."""
    if path is None:
        return
    try:
        if _pid_in(path) == os.getpid():
            path.unlink()
    except OSError:
        pass


def _refusal(path: Path) -> str | None:
    """Why an existing `path` may not become the pid file; None when it is absent or a pid
    file whose process is gone."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"cannot write the pid file {path}: {error.strerror}"
    if stat.S_ISDIR(mode):
        return f"cannot write the pid file {path}: it is a folder"
    if not stat.S_ISREG(mode):
        return f"{path} is there and is no pid file; choose another path for the pid file"
    try:
        pid = _pid_in(path)
    except OSError as error:
        return f"cannot read {path} (there already): {error.strerror}"
    if pid is None:
        return f"{path} is there and is no pid file; choose another path for the pid file"
    if _running(pid):
        return f"{path} is the pid file of running process {pid}; choose another path for the pid file"
    return None


def _pid_in(path: Path) -> int | None:
    """The pid a regular file holds, when a pid (and a newline) is all it holds."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        content = os.read(fd, LONGEST + 1)
    finally:
        os.close(fd)
    text = content.strip()
    if len(content) > LONGEST or not text.isdigit() or not 0 < int(text) < 2**31:
        return None
    return int(text)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    return True


def _create(path: Path) -> None:
    """Create `path` exclusively holding this process's pid (removed again when the write fails)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())  # a dozen bytes: one write puts them all
    except OSError:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
