"""Request and response bodies."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


# The OpenAPI document is the contract (a fuzzer checks both directions): every
# rule is a JSON-schema constraint on the value AS SENT, and what the server does
# afterwards (strip, lower-case) cannot turn a valid value into an invalid one.
# Whitespace is spelled out (ASCII only), never \s, whose meaning differs between
# regex engines; _strip removes exactly these. The patterns are linear on long input.
_WS = "\t\n\x0b\x0c\r "
_NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
_NOT_BLANK_NO_NUL = r"^[\t\n\x0b\x0c\r ]*[^\t\n\x0b\x0c\r \x00][^\x00]*$"  # something survives _strip
_EMAIL = r"^[\t\n\x0b\x0c\r ]*[^@\t\n\x0b\x0c\r \x00]+@[^@\t\n\x0b\x0c\r \x00]+[\t\n\x0b\x0c\r ]*$"


def _strip(value: str) -> str:
    return value.strip(_WS)


def _text(max_length: int, min_length: int = 0) -> Any:
    pattern = _NOT_BLANK_NO_NUL if min_length else _NO_NUL
    return Annotated[str, Field(max_length=max_length, pattern=pattern), AfterValidator(_strip)]


def _normal_email(value: str) -> str:
    # Checked after lower-casing, which can lengthen a string ('İ' becomes two code
    # points): the varchar(254) column would otherwise refuse the stored value with a 500.
    value = _strip(value).lower()
    if len(value) > 254:
        raise ValueError("must be at most 254 characters")
    return value


Email = Annotated[
    str, Field(max_length=254, pattern=_EMAIL), AfterValidator(_normal_email)
]
Password = Annotated[str, Field(min_length=8, max_length=1024)]
ProjectName = _text(200, min_length=1)
TaskTitle = _text(300, min_length=1)
Description = _text(20_000)
TaskStatus = Literal["todo", "in_progress", "done"]


def _omit_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def Optional(default: None = None) -> Any:  # noqa: N802 (reads as a type in the models below)
    """A field that may be left out but, when sent, may not be null (e.g. a PATCH of a NOT NULL column)."""
    return Field(default=default, json_schema_extra=_omit_default)


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")


class PatchModel(RequestModel):
    """A partial update: only the fields sent are applied; NOT NULL fields are typed without None."""

    def changes(self) -> dict[str, object]:
        return self.model_dump(exclude_unset=True)


class Credentials(RequestModel):
    email: Email
    password: Password


class RefreshRequest(RequestModel):
    """The refresh token; may be omitted when the refresh cookie is sent instead."""

    refresh_token: str | None = None


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    created_at: datetime


class ProjectCreate(RequestModel):
    name: ProjectName
    description: Description | None = None


class ProjectUpdate(PatchModel):
    name: ProjectName = Optional()
    description: Description | None = None


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime | None
    archived_at: datetime | None


class TaskCreate(RequestModel):
    title: TaskTitle
    description: Description | None = None
    status: TaskStatus = "todo"
    assignee_id: uuid.UUID | None = None
    due_date: date | None = None


class TaskUpdate(PatchModel):
    title: TaskTitle = Optional()
    description: Description | None = None
    status: TaskStatus = Optional()
    assignee_id: uuid.UUID | None = None
    due_date: date | None = None


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID
    title: str
    description: str | None
    status: TaskStatus
    assignee_id: uuid.UUID | None
    due_date: date | None
    created_at: datetime
    updated_at: datetime | None


class AssetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID
    task_id: uuid.UUID | None
    original_name: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime
