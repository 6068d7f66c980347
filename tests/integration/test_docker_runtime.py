"""The docker runtime against a real Docker engine: up -> status -> migrate status ->
logs -> down --volumes. Skips without an engine, fails instead when CI sets
DYNO_REQUIRE_DOCKER=1 (.ci/run does, after .ci/docker-setup built the images)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dynoctl.errors import ExitStatus
from tests.conftest import Dynoctl, free_port, make_project

pytestmark = pytest.mark.docker


def missing_prerequisite() -> str | None:
    """Why the docker tests cannot run here, or None. The images must already be on
    the engine: a test never pulls from a registry (loopback traffic only)."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
    except Exception:
        return "no Docker engine answers"
    for variable, default in (("DYNO_DB_IMAGE", "postgres:16-alpine"), ("DYNO_SERVER_BASE_IMAGE", "python:3.12-slim")):
        image = os.environ.get(variable, default)
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            return f"image {image} ({variable}) is not on the engine; .ci/docker-setup builds stand-ins offline"
    return None


def require_docker() -> None:
    """Skip without an engine and its images; under DYNO_REQUIRE_DOCKER=1 (CI), fail."""
    missing = missing_prerequisite()
    if missing:
        if os.environ.get("DYNO_REQUIRE_DOCKER") == "1":
            pytest.fail(f"DYNO_REQUIRE_DOCKER=1 but {missing}")
        pytest.skip(missing)


def new_docker_project(name: str, **env: str) -> Dynoctl:
    """A fresh project with env files, on the docker runtime, on free ports, under a
    Compose project of its own (``dyno<name><port>``); ``env`` adds variables."""
    require_docker()
    run = Dynoctl(make_project(f"dyno-{name}-"))
    assert run("env", "init").exit_code == 0
    api_port, db_port = free_port(), free_port()
    run.env = {"DYNO_RUNTIME": "docker", "DYNO_API_PORT": str(api_port), "DYNO_DB_PORT": str(db_port),
               "COMPOSE_PROJECT_NAME": f"dyno{name}{api_port}", **env}
    run.api = f"http://127.0.0.1:{api_port}"
    run.db_port = db_port
    return run


def remove_docker_project(run: Dynoctl) -> None:
    run("down", "--volumes", "--yes", env=run.env)
    shutil.rmtree(run.project, ignore_errors=True)


@pytest.fixture(scope="module")
def docker_stack():
    # An image of this run's own: others building dyno-server images at the same time
    # on this engine must not swap the code under test.
    port = free_port()
    run = new_docker_project("test", DYNO_SERVER_IMAGE=f"dyno-server:test{port}")
    yield run
    remove_docker_project(run)
    import docker

    try:
        docker.from_env().images.remove(run.env["DYNO_SERVER_IMAGE"])
    except docker.errors.DockerException:
        pass  # never built (a test failed first), or still in use


def docker_json(run, *args):
    result = run("--json", *args, env=run.env)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_docker_lifecycle(docker_stack):
    run = docker_stack
    up = docker_json(run, "up", "--build", "--timeout", "600")
    assert up["runtime"] == "docker"
    assert [r["revision"] for r in up["migrations"]["revisions"]] == ["0001", "0002"]
    with urllib.request.urlopen(f"{run.api}/ready", timeout=10) as response:
        assert response.status == 200

    again = docker_json(run, "up")
    assert again["started"] == [] and again["migrations"]["revisions"] == []

    status = docker_json(run, "status")
    by_name = {s["service"]: s for s in status["services"]}
    assert by_name["db"]["state"] == "running" and by_name["db"]["health"] == "healthy"
    assert by_name["server"]["state"] == "running" and by_name["server"]["health"] == "healthy"
    assert by_name["server"]["address"] == f"127.0.0.1:{run.api.rsplit(':', 1)[1]}"
    assert status["schema"]["current"] == status["schema"]["head"] == "0002"

    migrate = docker_json(run, "migrate", "status")
    assert migrate["pending"] == [] and migrate["current"] == "0002"

    logs = docker_json(run, "logs", "server", "--tail", "20")
    assert any("/ready" in r["line"] for r in logs)

    refused = run("down", "--volumes", env=run.env)
    assert refused.exit_code == ExitStatus.REFUSED
    down = docker_json(run, "down", "--volumes", "--yes")
    assert set(down["stopped"]) == {"db", "server"}
    assert any("postgres-data" in v for v in down["data_removed"])
    after = docker_json(run, "status")
    assert {s["state"] for s in after["services"]} == {"stopped"}


def test_docker_runtime_without_engine_points_to_local(project, monkeypatch):
    # A DOCKER_HOST nobody answers on: the runtime must say so and suggest local.
    run = Dynoctl(project)
    run("env", "init")
    result = run("--runtime", "docker", "status", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.exit_code == ExitStatus.UNREACHABLE
    assert "--runtime local" in result.stderr


def test_docker_taken_port_is_refused_and_nothing_starts(docker_stack):
    import socket

    run = docker_stack
    db_port = run.db_port
    with socket.socket() as squatter:
        # As any server would: connections in TIME_WAIT from earlier tests must not stop it.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", db_port))
        squatter.listen()
        result = run("up", env=run.env)
    assert result.exit_code == ExitStatus.REFUSED
    assert f"port {db_port}" in result.stderr
    assert {s["state"] for s in docker_json(run, "status")["services"]} == {"stopped"}


def test_docker_server_crashing_on_start_fails_up_with_its_log(docker_stack):
    run = docker_stack
    keys = run.project / ".dyno" / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "jwt-keys.json").write_text("{ not json")
    (keys / "jwt-keys.json").chmod(0o644)
    try:
        result = run("up", "--timeout", "300", env=run.env)
        assert result.exit_code == ExitStatus.UNREACHABLE
        assert "key file" in result.stderr  # the server's own complaint, from its container log
        assert {s["state"] for s in docker_json(run, "status")["services"]} == {"stopped"}
    finally:
        (keys / "jwt-keys.json").unlink()


# ------------------------------------------------------------ faults (issue 7)
def docker_cli(run, *args) -> list[str]:
    return [sys.executable, "-m", "dynoctl", "--project-dir", str(run.project), *args]


def test_docker_two_ups_at_once_one_is_busy(docker_stack):
    run = docker_stack
    env = {**os.environ, **run.env, "DYNO_JSON": ""}
    docker_json(run, "up", "--build", "--timeout", "600")  # the image first: then two ups race to start
    docker_json(run, "down")
    ups = [subprocess.Popen(docker_cli(run, "up", "--timeout", "300"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in ups]
    assert sorted(code for code, _ in results) == [0, ExitStatus.BUSY], results
    assert "ambiguous" not in "".join(err for _, err in results)
    with urllib.request.urlopen(f"{run.api}/ready", timeout=10) as response:
        assert response.status == 200


def test_docker_refusals_change_nothing_and_stop_and_inspect_always_work(docker_stack):
    run = docker_stack
    docker_json(run, "up", "--build", "--timeout", "600")
    env_file = run.project / "stack" / "env" / "server.docker.env"
    text = env_file.read_text()
    before = {s["service"]: s["detail"] for s in docker_json(run, "status")["services"]}
    env_file.write_text(text.replace("STATUS=development", "STATUS=staging").replace(
        "STATUS=production", "STATUS=staging"))
    try:
        refused = run("restart", env=run.env)
        assert refused.exit_code == ExitStatus.REFUSED, refused.stderr
        status = run("--json", "status", env=run.env)
        assert status.exit_code == 0 and "warning" in status.stderr
        after = {s["service"]: (s["state"], s["detail"]) for s in json.loads(status.stdout)["services"]}
        assert after == {name: ("running", detail) for name, detail in before.items()}  # same containers

        env_file.unlink()  # missing: Compose could not even load the project
        assert run("status", env=run.env).exit_code == 0
        assert run("logs", "db", "--tail", "3", env=run.env).exit_code == 0
        down = run("--json", "down", env=run.env)
        assert down.exit_code == 0, down.stderr
        assert set(json.loads(down.stdout)["stopped"]) == {"db", "server"}
    finally:
        env_file.write_text(text)
        env_file.chmod(0o600)


def test_docker_server_follows_new_migrations_and_restarts_after_a_crash(docker_stack):
    run = docker_stack
    docker_json(run, "up", "--build", "--timeout", "600")
    created = docker_json(run, "migrate", "new", "-m", "docker follows")
    try:
        docker_json(run, "migrate")
        ready = docker_json(run, "status")["services"][1]
        assert ready["health"] == "healthy", ready  # judged against the project's scripts, mounted
        import docker

        client = docker.from_env()
        project = run.env["COMPOSE_PROJECT_NAME"]
        server = client.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                           "com.docker.compose.service=server"]})[0]
        # A crash, not a stop: 'docker kill' counts as stopped by hand and is never restarted,
        # so the process dies from outside the engine's knowledge.
        os.kill(server.attrs["State"]["Pid"], signal.SIGKILL)
        deadline = time.monotonic() + 120
        while True:
            server.reload()
            if server.status == "running" and server.attrs.get("RestartCount", 0) >= 1:
                break
            assert time.monotonic() < deadline, server.status
            time.sleep(1)
    finally:
        docker_json(run, "migrate", "down", "0001", "--yes")
        Path(created["path"]).unlink()
