"""The alembic environment: head revision, models in sync, downgrade and upgrade."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from dynoserver.models import SCHEMA_HEAD_REVISION, Base

from .helpers import alembic_config, db_engine, migrate

TABLES = {"users", "sessions", "projects", "tasks", "assets"}


def differences(database_url: str) -> list:
    engine = db_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    return diff


def table_names(database_url: str) -> set[str]:
    engine = db_engine(database_url)
    with engine.connect() as connection:
        names = set(inspect(connection).get_table_names())
    engine.dispose()
    return names


def test_server_constant_names_the_migrations_head():
    # The container image carries dynoserver without migrations/, so /ready relies on the constant.
    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [SCHEMA_HEAD_REVISION]


def test_autogenerate_finds_no_difference_between_models_and_database(database_url):
    assert differences(database_url) == []


def test_downgrade_to_base_then_upgrade_to_head(postgres):
    url = postgres.create_database("server_migration_roundtrip")
    migrate(url)
    assert TABLES <= table_names(url)

    migrate(url, "base", down=True)
    assert table_names(url) == {"alembic_version"}

    migrate(url)
    assert TABLES <= table_names(url)
    assert differences(url) == []


def test_env_py_falls_back_to_database_url_with_a_prisma_schema(postgres, monkeypatch):
    url = postgres.create_database("server_migration_env_url")
    engine = db_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA dyno")
    engine.dispose()
    monkeypatch.setenv("DATABASE_URL", f"{url}?schema=dyno")

    command.upgrade(alembic_config(), "head")

    engine = db_engine(url)
    with engine.connect() as connection:
        assert TABLES <= set(inspect(connection).get_table_names(schema="dyno"))
        assert not TABLES & set(inspect(connection).get_table_names(schema="public"))
    engine.dispose()
