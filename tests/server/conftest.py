"""Fixtures for the API server: a migrated database per test module, an app per test.

The ``postgres`` fixture (a real embedded PostgreSQL) comes from tests/conftest.py.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from dynoserver.app import create_app
from dynoserver.settings import Settings

from .helpers import Account, make_settings, migrate, sign_up


@pytest.fixture(scope="module")
def database_url(postgres, request) -> str:
    """A fresh database for this test module, migrated to head."""
    url = postgres.create_database(f"server_{request.module.__name__.rsplit('.', 1)[-1]}")
    migrate(url)
    return url


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    return make_settings(database_url, tmp_path / "assets")


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def alice(client) -> Account:
    return sign_up(client)


@pytest.fixture
def bob(client) -> Account:
    return sign_up(client)

