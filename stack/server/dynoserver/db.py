"""Database engine and per-request sessions, and the credential that may change at run time.

Secret rotation moves the server to another database login without a restart: it
writes the new ``DATABASE_URL`` to ``database.json`` (``{"url": ...}``) beside the JWT key file (the
directory the docker runtime mounts into the container, whose environment is fixed
at creation) and sends SIGHUP. ``Database.reload`` then builds an engine for the new
URL and swaps it in; requests in flight finish on the old engine's connections,
which close when they are returned (``Engine.dispose``), so none is dropped. When
that file exists it wins over the environment's ``DATABASE_URL``, at start-up too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from fastapi import Request
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from dynoserver.dburl import sqlalchemy_url

T = TypeVar("T")
log = logging.getLogger("dynoserver.db")
CREDENTIAL_FILENAME = "database.json"  # *.json: dynoctl gives the key dir's JSON files the server's group


def credential_file(jwt_keys_file: Path | None) -> Path | None:
    """Where rotation puts the current DATABASE_URL: beside the key file."""
    return jwt_keys_file.parent / CREDENTIAL_FILENAME if jwt_keys_file is not None else None


def login_of(database_url: str) -> str | None:
    """The role name of a URL (what /health may show; never the password)."""
    username = urlsplit(database_url).username
    return unquote(username) if username else None


class Database:
    """The current engine and session factory; ``reload`` swaps both for a new URL."""

    def __init__(self, env_url: str, credential_path: Path | None):
        self._env_url = env_url
        self._credential_path = credential_path
        self.url = self._read_url()
        self.engine = create_db_engine(self.url)
        self.session_factory = create_session_factory(self.engine)

    @property
    def login(self) -> str | None:
        return login_of(self.url)

    def prepare(self) -> tuple[str, Engine] | None:
        """Blocking, so run it off the event loop: for a changed credential file, a new
        engine whose pool already holds tested connections (no request pays for the
        log-in); None when nothing changed. Raises when the new credential does not
        work, and the current engine stays."""
        url = self._read_url()
        if url == self.url:
            return None
        engine = create_db_engine(url)
        try:
            with engine.connect() as first, engine.connect() as second:
                first.exec_driver_sql("SELECT 1")
                second.exec_driver_sql("SELECT 1")
        except BaseException:
            engine.dispose()
            raise
        return url, engine

    def swap(self, url: str, engine: Engine) -> None:
        old = self.engine
        # Factory and engine together: a request takes the factory once, so it sees one
        # engine from start to end.
        self.url, self.engine, self.session_factory = url, engine, create_session_factory(engine)
        old.dispose()  # idle connections close now; checked-out ones when their request returns them

    def reload(self) -> bool:
        """prepare + swap in one blocking call; True when the engine was replaced."""
        prepared = self.prepare()
        if prepared is not None:
            self.swap(*prepared)
        return prepared is not None

    def _read_url(self) -> str:
        if self._credential_path is not None:
            try:
                url = json.loads(self._credential_path.read_text(encoding="utf-8")).get("url")
            except FileNotFoundError:
                return self._env_url
            except OSError as exc:
                raise ValueError(f"cannot read {self._credential_path}: {exc.strerror}") from None
            except (ValueError, AttributeError):
                raise ValueError(f"{self._credential_path} is not a JSON object") from None  # never quote it
            if isinstance(url, str) and url:
                return url
        return self._env_url


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
