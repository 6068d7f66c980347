"""Every error leaves the server as JSON: ``{"error": <code>, "message": <text>}``.

Validation errors add ``details`` (location, message, type) but never echo the
submitted values back, since they may be passwords or tokens. At most
``MAX_ERROR_DETAILS`` are listed (``details_total`` says how many there were):
a body with 60,000 unknown keys must not buy a 5 MB answer.

``error_responses`` declares these bodies in the OpenAPI document.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("dynoserver.errors")

# Spelled out rather than derived from HTTPStatus phrases, which Python 3.13 renamed (413, 422).
_HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    416: "range_not_satisfiable",
}


MAX_ERROR_DETAILS = 20

DESCRIPTIONS = {
    400: "Bad request (e.g. a malformed upload)",
    401: "Missing, invalid or expired credentials, or the session has ended",
    403: "Refused: the request comes from another origin",
    404: "Not found (or not yours)",
    409: "Conflict with the current state",
    413: "The body, the file or the storage quota is too large",
    416: "The requested range is not satisfiable",
    422: "The request is invalid",
    429: "Too many attempts: retry after Retry-After seconds",
    503: "Temporarily unavailable (database unreachable, or busy: see Retry-After)",
}


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    error: str
    message: str
    details: list[ErrorDetail] | None = None  # validation errors only
    details_total: int | None = None  # validation errors only


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """The ``responses=`` of a route: each status with the error body."""
    return {status: {"model": ErrorBody, "description": DESCRIPTIONS[status]} for status in statuses}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def error_response(status: int, code: str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    response = error_response(exc.status, exc.code, exc.message)
    response.headers.update(exc.headers or {})
    return response


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    response = error_response(exc.status_code, _HTTP_ERROR_CODES.get(exc.status_code, "http_error"), message)
    response.headers.update(exc.headers or {})
    return response


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    details = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors[:MAX_ERROR_DETAILS]]
    return error_response(
        422, "validation_error", "the request is invalid", details=details, details_total=len(errors)
    )


async def _database_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
    # Only the class name: driver messages can name hosts and users.
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
    return error_response(503, "database_unavailable", "the database is not reachable, try again later")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


class InternalErrorMiddleware:
    """Answers the JSON 500 from inside CORSMiddleware, so a browser can read it.

    Starlette runs the ``Exception`` handler in its outermost middleware, outside
    CORS. This one sends the same body first, then re-raises: the outer handler
    still logs the error and, seeing the response started, sends nothing more.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            if scope["type"] == "http" and not started:
                await error_response(500, "internal_error", "internal server error")(scope, receive, send)
            raise
