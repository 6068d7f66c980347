"""Request body limits, answered with the same JSON errors as everything else.

Starlette's own limiter (``max_body_size``) answers plain text when the declared
Content-Length is too large, hence this small replacement. Multipart bodies may
be as large as an upload (the upload route also checks the file size itself);
any other body, i.e. JSON, is small.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dynoserver.errors import error_response

JSON_BODY_LIMIT = 1024 * 1024


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI lets it through its body parsing to our JSON handler."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body exceeds {limit} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, json_limit: int, multipart_limit: int):
        self.app = app
        self.json_limit = json_limit
        self.multipart_limit = multipart_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        multipart = headers.get("content-type", "").lower().startswith("multipart/form-data")
        limit = self.multipart_limit if multipart else self.json_limit
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response = error_response(413, "too_large", f"the request body exceeds {limit} bytes")
            await response(scope, receive, send)
            return
        await self.app(scope, _limited(receive, limit), send)


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
