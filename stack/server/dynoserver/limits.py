"""Request body limits, answered with the same JSON errors as everything else.

Starlette's own limiter (``max_body_size``) answers plain text when the declared
Content-Length is too large, hence this small replacement. The upload routes'
bodies may be as large as an upload (the route also checks the file size
itself); any other body, i.e. JSON, is small. The larger limit follows the
route, not the Content-Type, which any client can set to multipart/form-data.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dynoserver.errors import error_response

JSON_BODY_LIMIT = 1024 * 1024


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
