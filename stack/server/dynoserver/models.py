"""The Dyno schema: SQLAlchemy 2 models.

A leaf module (SQLAlchemy and the standard library only): the server,
``migrations/env.py`` and dynoctl's purge all import it.

Maintenance queries these tables directly:

- ``sessions``: one row per refresh-token family; stale when ``expires_at`` is
  past or ``revoked_at`` is set.
- ``projects``: archived when ``archived_at`` is set.
- ``assets``: one row per stored file; the file layout is described in
  ``dynoserver.storage``.
- ``auth_throttle``: one counter per throttled key (client address or account)
  and window; stale once ``window_started_at`` is older than the server's
  AUTH_WINDOW_SECONDS (the server deletes such rows itself, now and then).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Uuid,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The alembic revision these models correspond to. /ready compares the database
# with it; a test keeps it equal to the head of migrations/ (the container image
# carries dynoserver without the migrations directory).
SCHEMA_HEAD_REVISION = "0002"

TASK_STATUSES = ("todo", "in_progress", "done")

# Deterministic constraint names, so that migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


def _updated_at() -> Mapped[datetime | None]:
    # Computed in Python, so the ORM knows the value without reading the row back.
    return mapped_column(DateTime(timezone=True), onupdate=lambda: datetime.now(timezone.utc))


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)  # argon2id, PHC string format
    created_at: Mapped[datetime] = _created_at()


class Session(Base):
    """A refresh-token family: rotated on every refresh, revoked as a whole."""

    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the current refresh token
    created_at: Mapped[datetime] = _created_at()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    user_agent: Mapped[str | None] = mapped_column(String(512))
    ip: Mapped[str | None] = mapped_column(String(64))
    # Refresh tokens carry the generation they were issued for; each rotation adds
    # one. Within the grace after ``rotated_at`` the previous generation still
    # refreshes (parallel tabs, retries); later it is a reused token.
    refresh_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime | None] = _updated_at()
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)

    # The listing: a user's projects, newest first.
    __table_args__ = (Index(None, "owner_id", "created_at"),)


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="todo", server_default="todo")
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    due_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime | None] = _updated_at()

    __table_args__ = (
        CheckConstraint("status IN ({})".format(", ".join(f"'{s}'" for s in TASK_STATUSES)), name="status"),
    )


class Asset(Base):
    __tablename__ = "assets"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"), index=True)
    original_name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(String(512), unique=True)  # relative to ASSETS_DIR
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (Index(None, "created_at"),)


class AuthThrottle(Base):
    """A fixed-window counter of login/register attempts, shared by every server process."""

    __tablename__ = "auth_throttle"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)  # "address:<ip>" or "account:<sha256>"
    window_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    hits: Mapped[int] = mapped_column(Integer)
