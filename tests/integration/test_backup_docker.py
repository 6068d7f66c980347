"""A backup taken on the local runtime, restored on the docker runtime (pg_restore in
the db container, assets into the server's volume), then backed up and restore-tested
there. Skips without an engine; fails under DYNO_REQUIRE_DOCKER=1 (CI)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile

import psycopg
import pytest

from tests.conftest import free_port, make_project
from tests.integration import test_backup as local_tests
from tests.integration.test_docker_runtime import new_docker_project, remove_docker_project
from tests.integration.test_local_runtime import configure, http_status

pytestmark = pytest.mark.docker


@pytest.fixture
def docker_project():
    run = new_docker_project("bk")
    yield run
    remove_docker_project(run)


def _docker_runtime(run):
    from dynoctl.config import Settings
    from dynoctl.runtime.compose import ComposeRuntime

    return ComposeRuntime(Settings(run.project, environ={**os.environ, **run.env}))


def container_assets(runtime) -> dict[str, str]:
    """The live files of the volume (the safety copy of a restore is a hidden directory beside them)."""
    out = io.BytesIO()
    assert runtime.exec("server", ["tar", "-C", "/data/assets", "-cf", "-", "."], stdout=out) == 0
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        return {m.name.removeprefix("./"): hashlib.sha256(tar.extractfile(m).read()).hexdigest()
                for m in tar if m.isfile() and not m.name.removeprefix("./").startswith(".")}


def test_local_backup_restored_on_docker(docker_project, tmp_path):
    # The local side: data, assets, a backup.
    source = make_project("dyno-bk-src-")
    try:
        local = configure(source, free_port(), free_port())
        assert local_tests.local(local, "up").exit_code == 0
        local.url = local_tests._url(source)
        local_tests.add_data(local)
        tables, assets = local_tests.table_checksums(local.url), local_tests.tree(local_tests.assets_root(local))
        data = local_tests.make_backup(local, "--output", str(tmp_path))
    finally:
        local_tests.local(local, "down", "--volumes", "--yes")
        shutil.rmtree(source, ignore_errors=True)

    run = docker_project
    up = run("up", "--timeout", "600", env=run.env)
    assert up.exit_code == 0, up.stderr
    restored = run("--json", "restore", data["path"], "--yes", env=run.env)
    assert restored.exit_code == 0, restored.stderr
    assert json.loads(restored.stdout)["server_ready"] is True
    runtime = _docker_runtime(run)
    from dynoctl.backup import psycopg_url

    url = psycopg_url(runtime.database_url())
    assert local_tests.table_checksums(url) == tables
    assert container_assets(runtime) == assets
    assert http_status(f"{run.api}/ready") == 200

    # And on docker: pg_dump in the db container, assets out of the volume.
    made = run("--json", "backup", "--output", str(tmp_path / "docker"), env=run.env)
    assert made.exit_code == 0, made.stderr
    backup = json.loads(made.stdout)
    assert backup["assets"] == 6 and backup["distinct_assets"] == 5
    verified = run("backup", "verify", backup["path"], "--restore-test", env=run.env)
    assert verified.exit_code == 0, verified.stderr
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM tasks")
    again = run("restore", backup["path"], "--yes", env=run.env)
    assert again.exit_code == 0, again.stderr
    assert local_tests.table_checksums(url) == tables
    assert container_assets(runtime) == assets

    # The two restores kept their safety copies (database, and asset tree inside the
    # volume); backup prune drops them when told they are old enough.
    pruned = run("--json", "backup", "prune", "--output", str(tmp_path / "docker"), "--keep-safety-days", "0",
                 "--apply", env=run.env)
    assert pruned.exit_code == 0, pruned.stderr
    kinds = sorted(c["kind"] for c in json.loads(pruned.stdout)["safety_copies"])
    assert kinds == ["assets", "assets", "database", "database"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'pm_app_before_restore_%'"
                            ).fetchone()[0] == 0
    assert container_assets(runtime) == assets
