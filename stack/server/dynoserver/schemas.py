"""Request and response bodies."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _text(max_length: int, min_length: int = 0) -> Any:
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(_no_nul),
    ]


def _fits_email_column(value: str) -> str:
    # Checked after lower-casing, which can lengthen a string ('İ' becomes two code
    # points): StringConstraints' max_length would see the raw input, and the
    # varchar(254) column would then refuse the stored value with a 500.
    if len(value) > 254:
        raise ValueError("must be at most 254 characters")
    return value


Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[^@\s\x00]+@[^@\s\x00]+$"),
    AfterValidator(_fits_email_column),
]
Password = Annotated[str, Field(min_length=8, max_length=1024)]
ProjectName = _text(200, min_length=1)
TaskTitle = _text(300, min_length=1)
Description = _text(20_000)
TaskStatus = Literal["todo", "in_progress", "done"]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PatchModel(RequestModel):
    """A partial update: only the fields sent are applied; NOT_NULL fields refuse an explicit null."""

    NOT_NULL: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _refuse_nulls(self) -> PatchModel:
        nulled = [name for name in self.NOT_NULL if name in self.model_fields_set and getattr(self, name) is None]
        if nulled:
            raise ValueError(f"{', '.join(nulled)} cannot be null")
        return self

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
    NOT_NULL = ("name",)

    name: ProjectName | None = None
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
    NOT_NULL = ("title", "status")

    title: TaskTitle | None = None
    description: Description | None = None
    status: TaskStatus | None = None
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
