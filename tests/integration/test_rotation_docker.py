"""rotate-secrets on the docker runtime: the server container (two workers) picks up
new keys and a new database login from the mounted key directory on SIGHUP, without
being recreated, under a steady load from the host (127.0.0.1)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.test_docker_runtime import new_docker_project, remove_docker_project
from tests.integration.test_rotation import FAST_HASHING, Load, all_workers_reported, login, me, secret_values

pytestmark = pytest.mark.docker


@pytest.fixture
def docker_stack():
    run = new_docker_project("rot")
    run.env_path = run.project / "stack" / "env" / "server.docker.env"
    run.env_path.write_text(run.env_path.read_text() + FAST_HASHING + "WEB_CONCURRENCY=2\n")
    run.keys_path = run.project / ".dyno" / "keys" / "jwt-keys.json"
    yield run
    remove_docker_project(run)


def test_docker_rotation_under_load(docker_stack, tmp_path):
    from dynoctl import envfiles

    run = docker_stack
    up = run("up", "--build", "--timeout", "600", env=run.env)
    assert up.exit_code == 0, up.stderr
    health = all_workers_reported(run.api)
    assert health["workers_expected"] == 2 and len(health["workers"]) == 2
    container_workers = {w["pid"] for w in health["workers"]}
    before = login(run.api, "before@example.com")
    old_url = envfiles.parse(run.env_path.read_text()).values["DATABASE_URL"]
    seen = secret_values(run, [])

    load = Load(run.api, tmp_path)
    try:
        time.sleep(1)
        jwt_run = run("rotate-secrets", "--yes", env=run.env)
        assert jwt_run.exit_code == 0, jwt_run.stderr
        seen |= secret_values(run, [])
        db_run = run("rotate-secrets", "--db-password", "--yes", env=run.env)
        assert db_run.exit_code == 0, db_run.stderr
        seen |= secret_values(run, [])
        time.sleep(1)
    finally:
        outcome = load.stop()

    assert outcome["requests"] > 50 and outcome["failures"] == []
    health = httpx.get(f"{run.api}/health").json()
    new_url = envfiles.parse(run.env_path.read_text()).values["DATABASE_URL"]
    assert urlsplit(new_url).username != urlsplit(old_url).username
    assert {w["db_login"] for w in health["workers"]} == {urlsplit(new_url).username}
    assert {w["pid"] for w in health["workers"]} == container_workers  # not recreated, not restarted
    assert me(run.api, before["access_token"]) == 200
    logs = run("logs", "server", env=run.env).stdout
    text = jwt_run.stdout + jwt_run.stderr + db_run.stdout + db_run.stderr + logs
    assert [s for s in seen if s in text] == []
