"""Logging: an access line per request (like morgan) and the server's own logs.

STATUS=development writes human text; STATUS=production writes one JSON object
per line. Both go to stdout, where ``docker logs`` and dynoctl's local runtime
collect them. Only method, path (never the query string), status, duration and
client address are logged: no headers, bodies or tokens.

Every logged field and message is passed through ``escape_controls`` in both
formats: a request path may hold a decoded ``%0A`` or a terminal escape, and
must not be able to write a forged line or recolour a terminal. In the text
format a traceback keeps its line breaks, each of its lines marked with ``  | ``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import datetime, timezone

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("dynoserver.access")

_ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "client")
# C0 controls, DEL, C1 controls and the Unicode line/paragraph separators: each can
# end a line or drive a terminal in some log viewer.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(value: object) -> object:
    """Strings with control characters written as visible escapes (\\n, \\x1b, \\u2028); other values as they are."""
    if not isinstance(value, str) or not _CONTROLS.search(value):
        return value
    return _CONTROLS.sub(_escape_one, value.replace("\\", "\\\\"))


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    return f"\\x{ord(char):02x}" if ord(char) <= 0xFF else f"\\u{ord(char):04x}"


class TextFormatter(logging.Formatter):
    """The development format, with the message escaped (the traceback is appended after)."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info:
            text += "\n" + _traceback_block(self.formatException(record.exc_info))
        return text


def _traceback_block(traceback: str) -> str:
    """Each traceback line marked and escaped: an exception message holding a request's
    text cannot start a line that looks like a log entry."""
    return "\n".join("  | " + str(escape_controls(line)) for line in traceback.split("\n"))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": escape_controls(record.getMessage()),
        }
        entry.update({name: escape_controls(getattr(record, name)) for name in _ACCESS_FIELDS if hasattr(record, name)})
        if record.exc_info:
            entry["exc"] = escape_controls(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(development: bool) -> None:
    """Route the server's and uvicorn's logs through one stdout handler.

    Idempotent: every create_app call replaces the handler it installed before.
    """
    handler = logging.StreamHandler(sys.stdout)
    if development:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    for name in ("dynoserver", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    # Our middleware writes the access line; uvicorn's own would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True


class AccessLogMiddleware:
    """Pure ASGI middleware: cheaper than BaseHTTPMiddleware and sees every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app raises before responding, the server answers 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            _log_access(scope, status, (time.perf_counter() - started) * 1000)


def _log_access(scope: Scope, status: int, duration_ms: float) -> None:
    client = scope.get("client")
    fields = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round(duration_ms, 2),
        "client": client[0] if client else None,
    }
    access_log.info("%s %s %d %.2f ms", fields["method"], fields["path"], status, duration_ms, extra=fields)
