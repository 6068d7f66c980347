"""The OpenAPI document, completed with the errors every operation can answer.

Routes declare their own specific errors (``errors.error_responses``: 409
email_taken, 429 throttled, ...). The errors that follow from an operation's
shape are added here, in one place, so that none is forgotten:

- a request body: 400 (unreadable body), 413 (too large), 422 (invalid);
- any parameter: 422;
- a bearer token: 401 (missing, invalid, expired, or the session has ended);
- a path parameter: 404 (no such resource, or not the caller's);
- anything but /health: 503 (the database is unreachable).

Every error is the one JSON body of ``errors.ErrorBody``; FastAPI's own 422
schema, which the server never sends, is replaced.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from dynoserver.errors import DESCRIPTIONS, ErrorBody

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_NO_DATABASE = {"/health"}
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _complete(
                get_openapi(title=app.title, version=app.version, routes=app.routes, description=app.description)
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise it


def _complete(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}").pop("$defs").items():
        schemas.setdefault(name, schema)
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"))
    schemas["ErrorBody"].pop("$defs", None)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status in sorted(_implied_errors(path, operation)):
                if str(status) not in responses or _is_fastapi_validation_error(responses[str(status)]):
                    responses[str(status)] = _error_response(status)
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return document


def _implied_errors(path: str, operation: dict[str, Any]) -> set[int]:
    statuses = {int(s) for s in operation["responses"] if s.isdigit() and int(s) >= 400}
    if "requestBody" in operation:
        statuses |= {400, 413, 422}
    if operation.get("parameters"):
        statuses.add(422)
    if operation.get("security"):
        statuses.add(401)
    if "{" in path:
        statuses.add(404)
    if path not in _NO_DATABASE:
        statuses.add(503)
    return statuses


def _is_fastapi_validation_error(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref", "").endswith("/HTTPValidationError")


def _error_response(status: int) -> dict[str, Any]:
    return {"description": DESCRIPTIONS[status], "content": {"application/json": {"schema": _ERROR_REF}}}
