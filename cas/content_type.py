"""Content types detected from the data itself (libmagic), refined by the filename.

libmagic recognizes binary formats by their bytes. For plain text and unknown data it can
only say `text/plain` or `application/octet-stream`; there the filename's extension is the
better witness (`.css`, `.js`, `.json`, `.csv` are all "text" to libmagic).
"""

import mimetypes

import magic

GENERIC = {"text/plain", "application/octet-stream", "inode/x-empty", "application/x-empty"}
FALLBACK = "application/octet-stream"


def detect_content_type(head: bytes, filename: str) -> str:
    sniffed = magic.from_buffer(head, mime=True) if head else "inode/x-empty"
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    if sniffed not in GENERIC:
        return sniffed
    if guessed and (sniffed != "text/plain" or _is_textual(guessed)):
        return guessed
    return FALLBACK if sniffed in ("inode/x-empty", "application/x-empty") else sniffed


def _is_textual(content_type: str) -> bool:
    return content_type.startswith("text/") or content_type.endswith(("+xml", "/json", "/javascript", "/xml", "/x-sh"))
