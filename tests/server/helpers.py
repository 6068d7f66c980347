"""Helpers shared by the server tests: migrations, settings, accounts."""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from dynoserver.dburl import sqlalchemy_url
from dynoserver.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
PASSWORD = "correct horse battery"


def alembic_config(connection=None) -> Config:
    """The Config dynoctl builds too: script_location in code, connection handed over."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def db_engine(database_url: str) -> Engine:
    return create_engine(sqlalchemy_url(database_url), poolclass=NullPool)


def migrate(database_url: str, revision: str = "head", *, down: bool = False) -> None:
    engine = db_engine(database_url)
    try:
        with engine.begin() as connection:
            run = command.downgrade if down else command.upgrade
            run(alembic_config(connection), revision)
    finally:
        engine.dispose()


def make_settings(database_url: str, assets_dir: Path, **overrides) -> Settings:
    defaults = dict(
        database_url=database_url,
        access_token_secret=secrets.token_urlsafe(32),
        refresh_token_secret=secrets.token_urlsafe(32),
        assets_dir=assets_dir,
        status="development",
        frontend_url="http://localhost:3000",
        # Cheap argon2: the tests exercise the flow, not the cost.
        argon2_time_cost=1,
        argon2_memory_kib=8,
        argon2_parallelism=1,
    )
    return Settings(**{**defaults, **overrides})


@dataclass
class Account:
    email: str
    tokens: dict

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


def sign_up(client: TestClient) -> Account:
    """Register a new user and log in."""
    email = f"user-{uuid.uuid4().hex[:12]}@example.test"
    assert client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    response = client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return Account(email, response.json())


def create_project(client: TestClient, account: Account, name: str = "Roadmap") -> dict:
    response = client.post("/projects", json={"name": name}, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()


def write_key_file(path: Path, access: dict[str, str], refresh: dict[str, str], *, signing: tuple[str, str]) -> None:
    """Write a JWT key file atomically, as a rotation tool would. ``signing`` = (access kid, refresh kid)."""
    document = {
        purpose: {"signing": kid, "keys": [{"kid": k, "secret": s} for k, s in keys.items()]}
        for purpose, keys, kid in (("access", access, signing[0]), ("refresh", refresh, signing[1]))
    }
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document))
    temporary.chmod(0o600)  # the server refuses a key file other users can read
    temporary.replace(path)
