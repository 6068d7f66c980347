"""Shared fixtures: a real embedded PostgreSQL for the whole session, and project
directories the unprivileged PostgreSQL account can reach."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest

from dynoctl import pgcluster, proc


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
    run_as = pgcluster.ensure_system_user("dynoctl-pg") if proc.is_root() else None
    binaries = pgcluster.find_binaries()
    if run_as:
        binaries = pgcluster.reachable_by_others(binaries)
    cluster = pgcluster.Cluster(root / "pg", free_port(), binaries, run_as)
    password = secrets.token_urlsafe(16)
    cluster.init("postgres", password)
    cluster.start()
    try:
        yield EmbeddedPostgres(cluster, password)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
