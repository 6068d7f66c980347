"""The env contract and the DATABASE_URL translation (no database needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from dynoserver.dburl import sqlalchemy_url
from dynoserver.settings import Settings, SettingsError

DOCKER_URL = "postgresql://postgres:postgres@db:5432/pm_app?schema=public"


def test_defaults_follow_the_env_contract():
    settings = Settings.from_env({"DATABASE_URL": DOCKER_URL})

    assert (settings.port, settings.access_token_ttl_seconds, settings.refresh_token_ttl_seconds) == (8000, 900, 604800)
    assert settings.status == "production" and settings.frontend_url == "http://localhost:3000"
    assert settings.jwt_keys_file is None and settings.assets_dir == Path("assets")


def test_every_variable_is_read():
    env = {
        "DATABASE_URL": DOCKER_URL,
        "PORT": "9000",
        "JWT_ACCESS_TOKEN_SECRET": "a" * 32,
        "JWT_REFRESH_TOKEN_SECRET": "r" * 32,
        "JWT_KEYS_FILE": "/run/secrets/jwt-keys.json",
        "FRONTEND_URL": "https://app.example.com/",
        "STATUS": "development",
        "ASSETS_DIR": "/data/assets",
        "ACCESS_TOKEN_TTL_SECONDS": "60",
        "REFRESH_TOKEN_TTL_SECONDS": "3600",
        "MAX_UPLOAD_BYTES": "1024",
        "ARGON2_TIME_COST": "2",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
    }

    settings = Settings.from_env(env)

    assert settings.port == 9000 and settings.development
    assert settings.frontend_url == "https://app.example.com"  # an origin: no path, no trailing slash
    assert settings.jwt_keys_file == Path("/run/secrets/jwt-keys.json")
    assert (settings.max_upload_bytes, settings.argon2_memory_kib) == (1024, 1024)


def test_secrets_stay_out_of_repr():
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://u:db-password@h/d", "JWT_ACCESS_TOKEN_SECRET": "access-secret-value"}
    )

    assert "db-password" not in repr(settings) and "access-secret-value" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "DATABASE_URL is required"),
        ({"DATABASE_URL": DOCKER_URL, "STATUS": "staging"}, "STATUS must be one of"),
        ({"DATABASE_URL": DOCKER_URL, "PORT": "eighty"}, "PORT must be a positive integer"),
        ({"DATABASE_URL": DOCKER_URL, "MAX_UPLOAD_BYTES": "-1"}, "MAX_UPLOAD_BYTES must be a positive integer"),
        ({"DATABASE_URL": DOCKER_URL, "FRONTEND_URL": "localhost:3000"}, "FRONTEND_URL must be an http"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        (DOCKER_URL, "postgresql+psycopg://postgres:postgres@db:5432/pm_app"),
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql://u@h/d?sslmode=require&connection_limit=5", "postgresql+psycopg://u@h/d?sslmode=require"),
    ],
)
def test_database_url_translation(database_url, expected):
    assert sqlalchemy_url(database_url) == expected


def test_non_public_schema_becomes_search_path():
    prisma_url = "postgresql://u:p%40ss@h:5433/pm_app?schema=Tenant_1&options=-cstatement_timeout%3D5"

    url = make_url(sqlalchemy_url(prisma_url))

    assert url.password == "p@ss" and url.port == 5433
    assert url.query["options"] == '-cstatement_timeout=5 -csearch_path="Tenant_1"'


@pytest.mark.parametrize("database_url", ["mysql://u@h/d", "postgresql://u@h/d?schema=a;drop"])
def test_unsupported_urls_are_refused(database_url):
    with pytest.raises(ValueError):
        sqlalchemy_url(database_url)
