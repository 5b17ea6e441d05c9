"""The mount daemon's log: where it goes, what a line looks like, and reopening it.

In the background the daemon logs to a file (`<store>/mount.log`, or `--log-file`): the
file is put on file descriptor 2, so that what libfuse or Python itself writes to stderr
lands there too. `--foreground` logs to stderr (journald under systemd) unless `--log-file`
names a file; when that stderr is systemd's journal (JOURNAL_STREAM names it), each line
starts with its syslog priority (`<4>`) instead of a time, so `journalctl -p warning` works
and the journal's own time is the one shown. SIGHUP reopens the file by its path (logrotate moved the old one away: its
`postrotate` sends SIGHUP, docs/service.md): the new file is put on descriptor 2, where
every handler writes, so no line is lost and the mount stays. Each line carries the time
(ISO 8601, UTC), the level and the logger's name.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from cas.errors import BadInput

log = logging.getLogger("assetfs.mount")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "<%(priority)d>%(levelname)s %(name)s: %(message)s"
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class UTCFormatter(logging.Formatter):
    """`2026-11-29T23:40:01.123Z`: the time as the CLI's JSON writes it."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class JournalFormatter(logging.Formatter):
    """`<3>ERROR assetfs.mount: …`: systemd reads the priority off the line's start."""

    def format(self, record: logging.LogRecord) -> str:
        record.priority = PRIORITIES.get(record.levelno, 6)
        return super().format(record)


def to_journal() -> bool:
    """Whether descriptor 2 is the journal stream systemd gave the service (JOURNAL_STREAM
    is its device:inode; a log file put on descriptor 2 later is not)."""
    expected = os.environ.get("JOURNAL_STREAM")
    try:
        info = os.fstat(2)
    except OSError:
        return False
    return bool(expected) and expected == f"{info.st_dev}:{info.st_ino}"


def configure_logging() -> None:
    """Log to descriptor 2 (through sys.stderr), one line per record."""
    level = logging.DEBUG if os.environ.get("ASSETFS_DEBUG") == "1" else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(JOURNAL_FORMAT) if to_journal() else UTCFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pyfuse3").addFilter(demote_gone_requests)


def demote_gone_requests(record: logging.LogRecord) -> bool:
    """pyfuse3 logs an ERROR when the kernel no longer wants a reply (ENOENT from
    fuse_reply_*): the request was interrupted, or the mount went away while a background
    request such as releasedir was queued. Nothing is lost then: it is logged as info."""
    if record.levelno == logging.ERROR and "failed with No such file or directory" in record.getMessage():
        record.levelno, record.levelname = logging.INFO, "INFO"
    return True


class LogFile:
    """The daemon's log file, or None for stderr; `reopen` on SIGHUP."""

    def __init__(self, path: Path | None, mode: int) -> None:
        self.path = Path(os.path.abspath(path)) if path is not None else None
        self.mode = mode

    def check(self) -> None:
        """Open (create) the file once, before the daemon starts: a path that cannot be
        written is a one-line error of the mount command, not a silent loss of the log."""
        if self.path is not None:
            os.close(self._open())

    def _open(self) -> int:
        assert self.path is not None
        try:
            return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, self.mode)
        except OSError as error:
            raise BadInput(f"cannot open the log file {self.path}: {error.strerror}") from None

    def attach(self) -> None:
        """Put the file on descriptor 2 (nothing to do for stderr)."""
        if self.path is None:
            return
        fd = self._open()
        sys.stderr.flush()
        os.dup2(fd, 2)
        os.close(fd)

    def reopen(self) -> None:
        """SIGHUP: open the path again (a new file when logrotate moved the old one) and
        write there from now on; when it cannot be opened, keep writing to the old one."""
        if self.path is None:
            log.info("SIGHUP: logging to stderr, no log file to reopen")
            return
        try:
            self.attach()
        except BadInput as error:
            log.warning("SIGHUP: %s; still writing to the file opened before", error)
            return
        log.info("SIGHUP: log file %s reopened", self.path)
