"""The database roles of a stack: who owns pm_app, and who the server logs in as.

- The **superuser** (POSTGRES_USER, default ``postgres``; password POSTGRES_PASSWORD in
  the env file) owns ``pm_app`` and its tables. dynoctl's own work (migrations, backups,
  restores, purges) connects as it: ``runtime.database_url()`` is its URL.
- ``dyno_app`` (NOLOGIN) holds every privilege the server needs on ``pm_app`` and
  nothing else: CONNECT, USAGE on schema public, SELECT/INSERT/UPDATE/DELETE on its
  tables, USAGE/SELECT on its sequences, and default privileges so tables the owner
  creates later are covered too. The schema's version table is read-only to it.
- ``dyno_app_a`` and ``dyno_app_b``: INHERIT members of ``dyno_app``, nothing more. The
  server logs in as one of them (its ``DATABASE_URL``); a rotation gives the other a
  new password and LOGIN, moves the server onto it, then disables the first. Two
  logins sharing one privilege role is what lets the switch happen without a failed
  request: both work during the overlap.

Passwords are sent to PostgreSQL as SCRAM-SHA-256 verifiers computed here, so the
plain text never reaches the server's logs or statistics
(https://www.postgresql.org/docs/16/sql-createrole.html: "the password ... can be
an already-encrypted SCRAM-SHA-256 verifier").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import quote, unquote, urlsplit

APP_ROLE = "dyno_app"
LOGINS = ("dyno_app_a", "dyno_app_b")
DEFAULT_SUPERUSER = "postgres"
SUPERUSER_KEYS = ("POSTGRES_USER", "POSTGRES_PASSWORD")  # in the env file; kept from the server's environment
VERSION_TABLE = "alembic_version"
PASSWORD_BYTES = 48  # as the env file's other secrets: 384 bits
SCRAM_ITERATIONS = 4096  # PostgreSQL's default scram_iterations


# ----------------------------------------------------------------------- names
def active_login(url: str) -> str:
    """The role a URL logs in as."""
    return unquote(urlsplit(url).username or "")


def other_login(login: str) -> str:
    """The login a rotation switches to from ``login``."""
    if login not in LOGINS:
        raise ValueError(f"{login!r} is not one of dynoctl's server logins {LOGINS}")
    return LOGINS[1 - LOGINS.index(login)]


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def with_credentials(url: str, user: str, password: str) -> str:
    """``url`` logging in as user:password instead (percent-encoded: any character survives)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}").geturl()


def superuser_credentials(values: Mapping[str, str]) -> tuple[str, str]:
    """(user, password) of the superuser from an env file's values. A stack made before
    POSTGRES_PASSWORD existed has it only in its DATABASE_URL (the server was the superuser)."""
    user = values.get("POSTGRES_USER") or DEFAULT_SUPERUSER
    password = values.get("POSTGRES_PASSWORD") or ""
    if not password and active_login(values.get("DATABASE_URL", "")) == user:
        password = unquote(urlsplit(values["DATABASE_URL"]).password or "")
    return user, password


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL would store for ``password`` (RFC 5802/7677).
    PostgreSQL SASLprep-normalises passwords first; ASCII passes that unchanged, so
    only ASCII is hashed here (callers send anything else as it is)."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}"


def _password_literal(password: str):
    from psycopg import sql

    return sql.Literal(scram_verifier(password) if password.isascii() else password)


# ----------------------------------------------------------------------- roles
def ensure_app_roles(admin_url: str, dbname: str, login: str, password: str) -> None:
    """Idempotently: create dyno_app and both logins if missing, grant dyno_app what the
    server needs on ``dbname``, and give ``login`` this password and LOGIN. The other
    login is left as it is (a new one is created NOLOGIN)."""
    with _admin_connection(admin_url, dbname) as conn:
        apply_app_roles(conn, login, password)
        conn.commit()


def apply_app_roles(conn, login: str, password: str) -> None:
    """ensure_app_roles on an open psycopg connection to the database, in its transaction."""
    from psycopg import sql

    if login not in LOGINS:
        raise ValueError(f"{login!r} is not one of dynoctl's server logins {LOGINS}")
    _create_missing_roles(conn)
    grant_app_privileges(conn)
    conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(login),
                                                                        _password_literal(password)))


def _create_missing_roles(conn) -> None:
    from psycopg import sql

    existing = {row[0] for row in conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", ([APP_ROLE, *LOGINS],))}
    # The privilege holder can never log in; the logins carry nothing but membership.
    if APP_ROLE not in existing:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN NOINHERIT").format(sql.Identifier(APP_ROLE)))
    for name in LOGINS:
        if name not in existing:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE "
                                 "NOREPLICATION NOBYPASSRLS IN ROLE {}").format(
                sql.Identifier(name), sql.Identifier(APP_ROLE)))


def grant_app_privileges(conn) -> None:
    """Give dyno_app what the server needs on the connected database, as its owner (the
    superuser) connects. Idempotent. Restore calls it after swapping a database in: a
    dump made with --no-privileges carries no grants."""
    from psycopg import sql

    app = sql.Identifier(APP_ROLE)
    dbname = conn.execute("SELECT current_database()").fetchone()[0]
    statements = [
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(dbname), app),
        # PostgreSQL 15+ no longer lets everyone create in public; older servers do.
        sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(app),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(app),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(app),
        # Tables and sequences the owner (whoever runs migrations: this role) creates later.
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}")
        .format(app),
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {}").format(app),
    ]
    for statement in statements:
        conn.execute(statement)
    # The server reads the schema revision (/ready) but never writes it.
    if conn.execute("SELECT to_regclass(%s)", (f"public.{VERSION_TABLE}",)).fetchone()[0]:
        conn.execute(sql.SQL("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON public.{} FROM {}").format(
            sql.Identifier(VERSION_TABLE), app))


def disable_login(conn, login: str) -> None:
    """NOLOGIN, no password, its sessions ended (rotation's last step)."""
    from psycopg import sql

    conn.execute(sql.SQL("ALTER ROLE {} WITH NOLOGIN PASSWORD NULL").format(sql.Identifier(login)))
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (login,))


def _admin_connection(admin_url: str, dbname: str):
    import psycopg

    from dynoctl.db import address
    from dynoctl.errors import Unreachable

    parts = urlsplit(admin_url)
    try:
        return psycopg.connect(host=parts.hostname, port=parts.port or 5432, user=unquote(parts.username or ""),
                               password=unquote(parts.password or ""), dbname=dbname, connect_timeout=5)
    except psycopg.OperationalError as exc:
        # The message may name the user, never the password.
        raise Unreachable(f"cannot connect to {address(admin_url)} as the superuser: {_first_line(exc)}",
                          hint="check POSTGRES_USER / POSTGRES_PASSWORD in the env file ('dynoctl env check')") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------- the server's login, per stack
@dataclass(frozen=True)
class ServerRole:
    """What ``ensure_server_role`` found and did (never a password)."""

    login: str | None  # the role the server logs in as, None if not dynoctl's
    env_file: Path
    moved_from: str | None = None  # the superuser the server used to log in as
    superuser_password_changed: bool = False
    note: str | None = None  # something the user should know


def ensure_server_role(env_path: Path, admin_url: str, dbname: str) -> ServerRole:
    """Make the server's login (its env file's DATABASE_URL) exist with the URL's
    password and dyno_app's privileges. A stack whose server still logs in as the
    superuser is moved onto dyno_app_a with a fresh password, and a weak or missing
    superuser password is replaced too; the env file is rewritten atomically (its
    previous version kept as a copy) before the transaction that changes the roles
    commits, so a failure anywhere leaves the old file and the old roles."""
    from dynoctl import envfiles

    values = envfiles.parse(envfiles.read_text(env_path)).values
    url = values.get("DATABASE_URL", "")
    login, superuser = active_login(url), values.get("POSTGRES_USER") or DEFAULT_SUPERUSER
    if login in LOGINS:
        ensure_app_roles(admin_url, dbname, login, unquote(urlsplit(url).password or ""))
        return ServerRole(login, env_path)
    if login != superuser:
        return ServerRole(None, env_path, note=f"DATABASE_URL logs in as {login!r}, a role dynoctl does not manage: "
                                                "left as it is")
    return _move_off_superuser(env_path, values, admin_url, dbname, superuser)


def _move_off_superuser(env_path: Path, values: Mapping[str, str], admin_url: str, dbname: str,
                        superuser: str) -> ServerRole:
    from psycopg import sql

    from dynoctl import envfiles
    from dynoctl.atomicfile import keep_copy

    login, password = LOGINS[0], new_password()
    updates = {"POSTGRES_USER": superuser, "DATABASE_URL": with_credentials(values["DATABASE_URL"], login, password)}
    superuser_password = values.get("POSTGRES_PASSWORD") or ""
    if envfiles.secret_problems(superuser_password):
        updates["POSTGRES_PASSWORD"] = new_password()
    with _admin_connection(admin_url, dbname) as conn:
        apply_app_roles(conn, login, password)
        if "POSTGRES_PASSWORD" in updates:
            conn.execute(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                sql.Identifier(superuser), _password_literal(updates["POSTGRES_PASSWORD"])))
        keep_copy(env_path)
        envfiles.update_env_file(env_path, updates)
        conn.commit()
    return ServerRole(login, env_path, moved_from=superuser,
                      superuser_password_changed="POSTGRES_PASSWORD" in updates)


def ensure_for_runtime(runtime) -> ServerRole:
    """ensure_server_role for a real runtime's env file and database (``up``, ``migrate``).
    The runtime forgets the env values it cached: the file may have just changed."""
    from dynoctl import envfiles

    env = envfiles.env_file(runtime.layout, runtime.env_name)
    admin_url = runtime.database_url()
    result = ensure_server_role(env.path, admin_url, urlsplit(admin_url).path.lstrip("/"))
    runtime.forget_env()
    return result


def describe(result: ServerRole) -> str | None:
    """A line for the user when something changed or needs their eye; None otherwise."""
    if result.moved_from:
        changed = " and a new superuser password" if result.superuser_password_changed else ""
        return (f"the API server no longer logs in as the database superuser {result.moved_from!r}: it now uses "
                f"its own role {result.login!r}; new password{changed} written to {result.env_file} (previous "
                "file kept beside it as .bak-*)")
    return result.note
