"""Translate the platform's Prisma-style ``DATABASE_URL`` into a SQLAlchemy URL.

Standard library only: dynoctl and ``migrations/env.py`` import it without
pulling in the server.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg"}

# Prisma-only connection arguments; libpq rejects unknown options, so they go.
# https://www.prisma.io/docs/orm/overview/databases/postgresql#arguments
_PRISMA_ONLY_ARGS = {
    "connection_limit",
    "pool_timeout",
    "pgbouncer",
    "socket_timeout",
    "statement_cache_size",
    "sslaccept",
    "sslidentity",
}

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def sqlalchemy_url(database_url: str) -> str:
    """Return a ``postgresql+psycopg://`` URL for a Prisma-style PostgreSQL URL.

    ``?schema=X`` becomes the libpq option ``-csearch_path="X"`` (dropped when
    X is ``public``, the server default); other libpq query arguments are kept.
    """
    parts = urlsplit(database_url)
    if parts.scheme not in _POSTGRES_SCHEMES:
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, not {parts.scheme or 'empty'}://")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in _PRISMA_ONLY_ARGS]
    schema = next((v for k, v in query if k == "schema"), "public")
    query = [(k, v) for k, v in query if k != "schema"]
    if schema != "public":
        query = _with_search_path(query, schema)
    return urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, urlencode(query), ""))


def _with_search_path(query: list[tuple[str, str]], schema: str) -> list[tuple[str, str]]:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"unsupported schema name in DATABASE_URL: {schema!r}")
    # Quoted so that a mixed-case Prisma schema keeps its case in search_path.
    option = f'-csearch_path="{schema}"'
    existing = [v for k, v in query if k == "options"]
    others = [(k, v) for k, v in query if k != "options"]
    return [*others, ("options", " ".join([*existing, option]))]
