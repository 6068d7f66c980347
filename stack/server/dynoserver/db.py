"""Database engine and per-request sessions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from fastapi import Request
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from dynoserver.dburl import sqlalchemy_url

T = TypeVar("T")


def create_db_engine(database_url: str) -> Engine:
    return create_engine(
        sqlalchemy_url(database_url),
        # dynoctl restarts the database (restore, upgrades): test pooled
        # connections before use instead of failing the first request after.
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args={"connect_timeout": 5},
        # Bound values (password hashes, token hashes) stay out of error messages and logs.
        hide_parameters=True,
    )


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def get_db(request: Request) -> Iterator[Session]:
    """FastAPI dependency: one ORM session per request, closed afterwards."""
    with request.app.state.session_factory() as session:
        yield session


def with_session(request: Request, operation: Callable[..., T], *args: object) -> T:
    """Run ``operation(db, *args)`` in a short session of its own (async endpoints call it in a thread)."""
    with request.app.state.session_factory() as session:
        return operation(session, *args)
