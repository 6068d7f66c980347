"""Request body limits, answered with the same JSON errors as everything else.

Starlette's own limiter (``max_body_size``) answers plain text when the declared
Content-Length is too large, hence this small replacement. The upload routes'
bodies may be as large as an upload (the route also checks the file size
itself); any other body, i.e. JSON, is small. The larger limit follows the
route, not the Content-Type, which any client can set to multipart/form-data.

``JsonGuardRoute`` keeps large JSON bodies off the event loop: a body past
``INLINE_JSON_BYTES`` is parsed and measured in a worker thread, and one with
more than ``MAX_JSON_ITEMS`` members and elements is refused before any model
validation (whose cost grows with them: 60,000 unknown keys once held the loop
for 0.44 s). FastAPI then validates the already parsed document.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dynoserver.errors import error_response

# The largest valid body is a task: a 20,000-character description and a 300-character
# title, each character at most 12 bytes of JSON (an escaped surrogate pair), ~245 KB.
JSON_BODY_LIMIT = 256 * 1024
# Bodies up to this size are parsed on the loop as usual: microseconds.
INLINE_JSON_BYTES = 16 * 1024
# Far above any valid request body of this API (a task has 5 fields).
MAX_JSON_ITEMS = 1000


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI lets it through its body parsing to our JSON handler."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body exceeds {limit} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, json_limit: int, upload_limit: int, upload_routes: Sequence[BaseRoute]):
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit
        self.upload_routes = upload_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if self._is_upload(scope) else self.json_limit
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response = error_response(413, "too_large", f"the request body exceeds {limit} bytes")
            await response(scope, receive, send)
            return
        await self.app(scope, _limited(receive, limit), send)

    def _is_upload(self, scope: Scope) -> bool:
        # The router's own matching (path and method), so the two cannot disagree.
        return any(route.matches(scope)[0] is Match.FULL for route in self.upload_routes)


def _limited(receive: Receive, limit: int) -> Receive:
    """Count body bytes as they arrive: chunked bodies declare no length."""
    received = 0

    async def receive_within_limit() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise BodyTooLarge(limit)
        return message

    return receive_within_limit


class JsonGuardRoute(APIRoute):
    """An APIRoute that parses large JSON bodies in a thread and refuses oversized documents early."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def guarded(request: Request) -> Response:
            refusal = await _parse_large_json(request)
            return refusal if refusal is not None else await handler(request)

        return guarded


async def _parse_large_json(request: Request) -> Response | None:
    content_type = request.headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        return None
    body = await request.body()
    if len(body) <= INLINE_JSON_BYTES:
        return None
    try:
        document, items = await run_in_threadpool(_parse_and_count, body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        position = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        details = [{"loc": ["body", position], "msg": "JSON decode error", "type": "json_invalid"}]
        return error_response(422, "validation_error", "the request is invalid", details=details, details_total=1)
    if items > MAX_JSON_ITEMS:
        message = f"the JSON body has more than {MAX_JSON_ITEMS} members and elements"
        return error_response(422, "validation_error", message, details=[], details_total=items)
    request._json = document  # Starlette's cache of request.json(): FastAPI validates this document
    return None


def _parse_and_count(body: bytes) -> tuple[Any, int]:
    document = json.loads(body)
    items, pending = 0, [document]
    while pending and items <= MAX_JSON_ITEMS:
        value = pending.pop()
        if isinstance(value, dict):
            items += len(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            items += len(value)
            pending.extend(value)
    return document, items
