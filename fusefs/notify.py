"""Readiness for systemd (`Type=notify`): the sd_notify datagram, sent by hand.

systemd names a unix datagram socket in NOTIFY_SOCKET (a path, or `@name` in the abstract
namespace); a service sends `READY=1` once it serves, `STOPPING=1` when it begins to stop.
The protocol is one datagram of newline-separated assignments (sd_notify(3)). Without
NOTIFY_SOCKET nothing is sent. A failure to send is logged, never fatal: the mount works
the same, systemd only waits for its start timeout.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("assetfs.mount")
SEND_TIMEOUT_S = 5.0


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to NOTIFY_SOCKET; whether it was sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET=%s is neither a path nor an abstract socket: not notified", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT_S)
            sock.sendto(state.encode(), address)
    except OSError as error:
        log.warning("could not notify the service manager (%s) of %s: %s", address.lstrip("\0"), state,
                    error.strerror or error)
        return False
    return True
