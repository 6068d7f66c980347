"""Stream a multipart/form-data upload straight into a FileSink.

Starlette's form parser spools files to the system temp directory and has no
size limit for them; here the bytes land in ASSETS_DIR as they arrive and the
limit stops the transfer as soon as it is crossed.

Accepted shape: exactly one file part named ``file`` plus the declared short
text fields (``TEXT_FIELDS``); any other part is refused, as the OpenAPI
document says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from dynoserver.storage import FileSink

FILE_FIELD = "file"
# Allowance for the multipart framing around the file in the request body limit.
MULTIPART_OVERHEAD = 64 * 1024
TEXT_FIELDS = frozenset({"task_id"})
MAX_FIELD_BYTES = 1024
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$")


class BadUpload(Exception):
    """The request body is not an acceptable multipart upload."""


@dataclass
class UploadedFile:
    original_name: str
    content_type: str
    fields: dict[str, str] = field(default_factory=dict)


async def receive_upload(request: Request, sink: FileSink) -> UploadedFile:
    """Feed the request body through the multipart parser; file bytes go to ``sink``."""
    parts = _PartCollector()
    try:
        parser = MultipartParser(_boundary(request.headers.get("content-type")), parts.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
            received = parts.take_file_bytes()
            if received:
                await run_in_threadpool(sink.write, received)
        parser.finalize()
    except FormParserError:
        raise BadUpload("malformed multipart body") from None
    except ClientDisconnect:
        raise BadUpload("the client disconnected during the upload") from None
    return parts.result()


def _boundary(content_type: str | None) -> bytes:
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise BadUpload("expected a multipart/form-data body")
    return options[b"boundary"]


class _PartCollector:
    """python-multipart callbacks: collect text fields, queue file bytes for the sink."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.file: UploadedFile | None = None
        self.complete = False
        self._file_chunks: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._field_name: str | None = None  # None while inside the file part
        self._field_value = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def take_file_bytes(self) -> bytes:
        received, self._file_chunks = b"".join(self._file_chunks), []
        return received

    def result(self) -> UploadedFile:
        if not self.complete:
            raise BadUpload("the multipart body ended early")
        if self.file is None:
            raise BadUpload(f"no file part named '{FILE_FIELD}'")
        self.file.fields = self.fields
        return self.file

    def _part_begin(self) -> None:
        self._headers, self._field_value = {}, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = _decode(options.get(b"name", b""))
        if b"filename" not in options:
            if name not in TEXT_FIELDS or name in self.fields:
                raise BadUpload(f"unexpected form field {name[:64]!r}: send '{FILE_FIELD}' and optionally 'task_id'")
            self._field_name = name
            return
        if name != FILE_FIELD or self.file is not None:
            raise BadUpload(f"send exactly one file, in the part named '{FILE_FIELD}'")
        self._field_name = None
        self.file = UploadedFile(
            original_name=_safe_file_name(_decode(options[b"filename"])),
            content_type=_safe_media_type(self._headers.get(b"content-type", b"")),
        )

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._field_name is None:
            self._file_chunks.append(data[start:end])
            return
        self._field_value += data[start:end]
        if len(self._field_value) > MAX_FIELD_BYTES:
            raise BadUpload(f"form field '{self._field_name}' is too long")

    def _part_end(self) -> None:
        if self._field_name is not None:
            self.fields[self._field_name] = _decode(bytes(self._field_value))

    def _end(self) -> None:
        self.complete = True


def _decode(raw: bytes) -> str:
    # Browsers send UTF-8 names; the parser hands header bytes through latin-1.
    try:
        return raw.decode("utf-8").replace("\x00", "")
    except UnicodeDecodeError:
        return raw.decode("latin-1").replace("\x00", "")


def _safe_file_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base[:255] or "upload"


def _safe_media_type(raw: bytes) -> str:
    media_type = raw.decode("latin-1").split(";", 1)[0].strip().lower()
    return media_type if len(media_type) <= 255 and _MEDIA_TYPE.match(media_type) else "application/octet-stream"
