"""A `multipart/form-data` upload (a browser form), streamed: one file part is the content.

Text fields (`name`, `content_type`, `expires_in`, `filename`, `meta.KEY`) must come before
the file part, because the store needs them before it reads the content; a part after the
file, or a second file, rejects the upload (nothing is stored). Parsing runs in the upload's
worker thread, over the pieces `BodyStream.pull` hands it.
"""

import io

from python_multipart.multipart import MultipartParser, parse_options_header

from serve.body import BodyStream, Rejected

MAX_FIELDS_BYTES = 64 * 1024


class MultipartBody(io.RawIOBase):
    """The file part's content as a stream; `fields` and `filename` are known after `start`."""

    def __init__(self, stream: BodyStream, boundary: bytes) -> None:
        self.stream = stream
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_content_type: str | None = None
        self._state = "before"  # before → file → after
        self._in_file = False
        self._headers: dict[str, str] = {}
        self._field, self._value = bytearray(), bytearray()
        self._text = bytearray()
        self._text_total = 0
        self._pending: list[bytes] = []
        self._current = memoryview(b"")
        self._done = False
        self._parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        })

    def _reject(self, code: str, message: str) -> Rejected:
        return self.stream.reject(400, code, message)

    # parser callbacks ------------------------------------------------------------------------

    def _part_begin(self) -> None:
        self._headers = {}
        self._text = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("utf-8", "replace")
        self._field, self._value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        if self._state != "before":
            raise self._reject("multipart_order", "a form part follows the file: put the file last")
        if b"filename" in options:
            self._state, self._in_file = "file", True
            raw = options[b"filename"].decode("utf-8", "replace")
            self.filename = raw.replace("\\", "/").rsplit("/", 1)[-1] or None
            self.file_content_type = self._headers.get("content-type")
        else:
            self._field_name = options.get(b"name", b"").decode("utf-8", "replace")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pending.append(bytes(data[start:end]))
            return
        self._text_total += end - start
        if self._text_total > MAX_FIELDS_BYTES:
            raise self._reject("form_too_large", f"the form's text fields exceed {MAX_FIELDS_BYTES // 1024} KiB")
        self._text += data[start:end]

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file, self._state = False, "after"
            return
        try:
            self.fields[self._field_name] = self._text.decode("utf-8")
        except UnicodeDecodeError:
            raise self._reject("form_invalid", f"form field {self._field_name!r} is not UTF-8") from None

    # reading ---------------------------------------------------------------------------------

    def _pump(self) -> bool:
        """Feed the parser one more piece of the body; False at its end."""
        data = self.stream.pull()
        if not data:
            self._parser.finalize()
            return False
        try:
            self._parser.write(data)
        except Rejected:
            raise
        except Exception as error:  # the parser's own errors: a malformed body
            raise self._reject("multipart_invalid", f"malformed multipart body: {error}") from None
        return True

    def start(self) -> None:
        """Read up to the file part's first bytes (so its fields are known)."""
        while self._state == "before":
            if not self._pump():
                raise self._reject("file_missing", "the form has no file part")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._current:
            if self._pending:
                self._current = memoryview(self._pending.pop(0))
                continue
            if self._state == "after" or self._done:
                while self._pump():  # the rest of the body: only the closing boundary may follow
                    pass
                self._done = True
                return 0
            if not self._pump():
                raise self._reject("multipart_invalid", "the body ended inside the file part")
        count = min(len(buffer), len(self._current))
        buffer[:count] = self._current[:count]
        self._current = self._current[count:]
        return count
