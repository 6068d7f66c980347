"""Alembic environment for the Dyno schema.

Two ways in:

- dynoctl (or a test) hands over a SQLAlchemy Connection through
  ``config.attributes["connection"]`` and owns its transaction: commit after
  the command returns (``with engine.begin() as connection: ...``).
- Otherwise the ``DATABASE_URL`` environment variable (Prisma-style) is used.

Only ``dynoserver.models`` and ``dynoserver.dburl`` are imported, never the
server's settings: migrating must not need JWT secrets.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from dynoserver.dburl import sqlalchemy_url
from dynoserver.models import Base

config = context.config
target_metadata = Base.metadata

# Only the developer's alembic.ini configures logging; a caller that hands over
# a connection keeps its own logging setup.
if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("set DATABASE_URL or hand a connection over in config.attributes['connection']")
    return sqlalchemy_url(url)


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)


def run_offline() -> None:
    """``alembic upgrade --sql``: print the SQL instead of running it."""
    _configure(url=_database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = create_engine(_database_url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            run_on(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
