"""Content types detected from the data itself (libmagic), refined by the filename.

libmagic recognizes binary formats by their bytes. For plain text and unknown data it can
only say `text/plain` or `application/octet-stream`; there the filename's extension is the
better witness (`.css`, `.js`, `.json`, `.csv` are all "text" to libmagic).

Loading libmagic costs a command tens of milliseconds (python-magic runs `ldconfig -p` to
find it and reads its database three times), so it is loaded on first use, and a put that
will detect a content type starts loading it in a thread (`load_in_background`) while its
data is copied.
"""

from __future__ import annotations

import mimetypes
import threading
from typing import TYPE_CHECKING

from cas import signalmask

if TYPE_CHECKING:
    import magic

GENERIC = {"text/plain", "application/octet-stream", "inode/x-empty", "application/x-empty"}
FALLBACK = "application/octet-stream"

_loading = threading.Lock()
_detector: "magic.Magic | None" = None
_started = False


def _mime_detector() -> "magic.Magic":
    """The process's libmagic instance for MIME types, loaded once (thread-safe: its calls
    hold the instance's own lock)."""
    global _detector
    with _loading:
        if _detector is None:
            import magic

            _detector = magic.Magic(mime=True)
        return _detector


def load_in_background() -> None:
    """Start loading libmagic in a daemon thread (once per process), so the detection that
    follows a long copy does not wait for it. A failure there is left for that detection
    to raise, in the caller's thread."""
    global _started
    if _started:
        return
    _started = True

    def load() -> None:
        try:
            _mime_detector()
        except Exception:  # e.g. libmagic missing: detect_content_type raises it when called
            pass

    with signalmask.held():  # the main thread takes SIGTERM, not this one (cas/signalmask.py)
        threading.Thread(target=load, name="assetfs-magic", daemon=True).start()


def detect_content_type(head: bytes, filename: str) -> str:
    sniffed = _mime_detector().from_buffer(head) if head else "inode/x-empty"
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    if sniffed not in GENERIC:
        return sniffed
    if guessed and (sniffed != "text/plain" or _is_textual(guessed)):
        return guessed
    return FALLBACK if sniffed in ("inode/x-empty", "application/x-empty") else sniffed


def _is_textual(content_type: str) -> bool:
    return content_type.startswith("text/") or content_type.endswith(("+xml", "/json", "/javascript", "/xml", "/x-sh"))
