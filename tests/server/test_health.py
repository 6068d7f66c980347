"""Probes, CORS, the access log, the OpenAPI document."""

from __future__ import annotations

import json
import logging
import socket

import pytest
from fastapi.testclient import TestClient

from dynoserver.app import create_app
from dynoserver.models import SCHEMA_HEAD_REVISION

from .helpers import make_settings, migrate

FRONTEND = "http://localhost:3000"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_health_reports_the_key_set_version(client):
    response = client.get("/health")

    assert response.status_code == 200
    body = response.json()
    version = client.app.state.keys.current.version
    assert (body["status"], body["keyset"], body["workers_expected"]) == ("ok", version, 1)
    assert [(w["keyset"], w["db_login"]) for w in body["workers"]] == [(version, client.app.state.database.login)]


def test_ready_is_503_before_migration_and_200_after(postgres, tmp_path):
    url = postgres.create_database("server_ready_probe")
    with TestClient(create_app(make_settings(url, tmp_path))) as client:
        before = client.get("/ready")
        migrate(url)
        after = client.get("/ready")

    assert before.status_code == 503
    assert before.json() == {"ready": False, "reason": "schema not migrated: no alembic_version table"}
    assert after.status_code == 200
    assert after.json() == {"ready": True, "revision": SCHEMA_HEAD_REVISION}


def test_unreachable_database_gives_503_not_500(tmp_path):
    url = f"postgresql://postgres:secret@127.0.0.1:{closed_port()}/pm_app?schema=public"
    with TestClient(create_app(make_settings(url, tmp_path))) as client:
        ready = client.get("/ready")
        login = client.post("/auth/login", json={"email": "a@example.test", "password": "whatever1"})

    assert ready.status_code == 503 and ready.json()["reason"] == "database unreachable"
    assert login.status_code == 503 and login.json()["error"] == "database_unavailable"
    assert client.get("/health").status_code == 200


def test_cors_allows_the_frontend_origin_only(client):
    allowed = client.options(
        "/projects", headers={"Origin": FRONTEND, "Access-Control-Request-Method": "POST",
                              "Access-Control-Request-Headers": "authorization,content-type"}
    )
    refused = client.options(
        "/projects", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    simple_foreign = client.get("/health", headers={"Origin": "https://evil.example"})

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == FRONTEND
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert "access-control-allow-origin" not in simple_foreign.headers
    assert client.get("/health", headers={"Origin": FRONTEND}).headers["access-control-allow-origin"] == FRONTEND


def test_error_responses_carry_cors_headers(settings):
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("unexpected")

    origin = {"Origin": FRONTEND}
    with TestClient(app, raise_server_exceptions=False) as client:
        too_large = client.post("/auth/login", content=b"x" * (2 * 1024 * 1024), headers=origin)
        internal = client.get("/boom", headers=origin)

    assert too_large.status_code == 413 and internal.status_code == 500
    assert internal.json() == {"error": "internal_error", "message": "internal server error"}
    for response in (too_large, internal):
        assert response.headers["access-control-allow-origin"] == FRONTEND
        assert response.headers["access-control-allow-credentials"] == "true"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access_records():
    handler = _Records()
    logger = logging.getLogger("dynoserver.access")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def test_access_log_is_one_json_line_per_request_without_secrets(database_url, tmp_path, access_records, capsys):
    settings = make_settings(database_url, tmp_path, status="production")
    with TestClient(create_app(settings)) as client:
        client.get("/projects?token=query-secret", headers={"Authorization": "Bearer header-secret"})

    output = capsys.readouterr().out
    lines = [json.loads(line) for line in output.splitlines()]
    access = [line for line in lines if line["logger"] == "dynoserver.access"]
    assert len(access_records) == len(access) == 1
    assert (access[0]["method"], access[0]["path"], access[0]["status"]) == ("GET", "/projects", 401)
    assert isinstance(access[0]["duration_ms"], float)
    for secret in ("query-secret", "header-secret", settings.access_token_secret, settings.refresh_token_secret):
        assert secret not in output


def test_development_access_log_is_human_text(client, access_records):
    client.get("/health")

    assert access_records[-1].getMessage().startswith("GET /health 200 ")


def test_openapi_document_lists_the_api(client):
    document = client.get("/openapi.json").json()

    assert {"/auth/login", "/projects", "/projects/{project_id}/assets", "/health", "/ready"} <= set(document["paths"])
    upload = document["paths"]["/projects/{project_id}/assets"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
