"""The daemon's log: pyfuse3's complaint about a reply the kernel no longer wanted (an
interrupted request, or a background one such as releasedir queued at unmount) is info, not an
error; every other pyfuse3 error stays an error."""

import logging

from fusefs.daemonlog import demote_gone_requests as _demote_gone_requests


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("pyfuse3", logging.ERROR, __file__, 1, message, args, None)


def test_a_reply_to_a_gone_request_is_info() -> None:
    gone = record("fuse_releasedir(): fuse_reply_* failed with %s", "No such file or directory")
    assert _demote_gone_requests(gone)
    assert (gone.levelno, gone.levelname) == (logging.INFO, "INFO")


def test_other_pyfuse3_errors_stay_errors() -> None:
    other = record("fuse_read(): fuse_reply_* failed with %s", "Broken pipe")
    assert _demote_gone_requests(other)
    assert (other.levelno, other.levelname) == (logging.ERROR, "ERROR")
