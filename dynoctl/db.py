"""Database connections for dynoctl's own work (migrations, status, later backups and
purges). URLs are the platform's (Prisma-style ``?schema=``); dynoserver.dburl is the
one place that translates them."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit

from dynoctl.errors import Unreachable


def address(url: str) -> str:
    """host:port/dbname, for messages (never the password)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


def make_engine(url: str):
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    from dynoserver.dburl import sqlalchemy_url

    # dynoctl runs briefly: no pool to keep; a short connect timeout so an absent
    # database is reported quickly instead of hanging.
    return sqlalchemy.create_engine(sqlalchemy_url(url), poolclass=NullPool,
                                    connect_args={"connect_timeout": 5})


@contextmanager
def connection(url: str) -> Iterator:
    """A SQLAlchemy connection; a database that does not answer raises Unreachable."""
    import sqlalchemy.exc

    engine = make_engine(url)
    try:
        try:
            conn = engine.connect()
        except sqlalchemy.exc.OperationalError as exc:
            raise Unreachable(
                f"the database at {address(url)} does not accept connections: {first_line(exc)}",
                hint="start it with 'dynoctl up', or check DATABASE_URL with 'dynoctl env show'",
            ) from None
        with conn:
            yield conn
    finally:
        engine.dispose()


def first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
