"""Shared fixtures: a real embedded PostgreSQL for the whole session, and project
directories the unprivileged PostgreSQL account can reach."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest

from dynoctl import pgcluster


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def searchable_tempdir(prefix: str) -> Path:
    """A temp dir other users can traverse: pytest's tmp_path lives under a 0700
    directory, which PostgreSQL's unprivileged account could not enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o711)
    return path


class EmbeddedPostgres:
    def __init__(self, cluster: pgcluster.Cluster, password: str):
        self.cluster = cluster
        self.password = password

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres:{quote(self.password)}@127.0.0.1:{self.cluster.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres():
    root = searchable_tempdir("dyno-test-pg-")
    try:
        with pgcluster.scratch_cluster(root, free_port()) as (cluster, password):
            yield EmbeddedPostgres(cluster, password)
    finally:
        shutil.rmtree(root, ignore_errors=True)


REPO = Path(__file__).resolve().parent.parent


def make_project(prefix: str = "dyno-project-") -> Path:
    """A fresh project directory holding a copy of this checkout's stack and migrations
    (no real env files, no state)."""
    project = searchable_tempdir(prefix)
    ignore = shutil.ignore_patterns("*.env", "*.env.bak-*", "__pycache__", ".dyno")
    shutil.copytree(REPO / "stack", project / "stack", ignore=ignore)
    shutil.copytree(REPO / "migrations", project / "migrations", ignore=ignore)
    return project


@pytest.fixture
def project():
    path = make_project()
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Dynoctl:
    """Runs the real CLI in-process for one project directory."""

    def __init__(self, project: Path):
        self.project = project

    def __call__(self, *args: str, env: dict | None = None, input: str | None = None):
        from typer.testing import CliRunner

        from dynoctl.cli import app

        runner = CliRunner(env={"DYNO_RUNTIME": None, "DYNO_JSON": None, **(env or {})})
        return runner.invoke(app, ["--project-dir", str(self.project), *args], input=input,
                             catch_exceptions=False)

    def json(self, *args: str, env: dict | None = None):
        import json

        result = self("--json", *args, env=env)
        return result, json.loads(result.stdout)


@pytest.fixture
def dynoctl(project) -> Dynoctl:
    return Dynoctl(project)
