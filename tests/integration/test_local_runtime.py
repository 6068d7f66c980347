"""The local runtime for real: embedded PostgreSQL, the real server process, every
lifecycle command, and the faults a user meets."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from dynoctl.errors import ExitStatus
from tests.conftest import Dynoctl, free_port, make_project


def configure(project: Path, api_port: int, db_port: int) -> Dynoctl:
    """env init, then move the stack to free ports so tests never touch 8000/5433."""
    run = Dynoctl(project)
    assert run("env", "init").exit_code == 0
    path = project / "stack" / "env" / "server.local.env"
    text = path.read_text().replace("PORT=8000", f"PORT={api_port}").replace("127.0.0.1:5433", f"127.0.0.1:{db_port}")
    path.write_text(text)
    return run


@pytest.fixture
def stack():
    project = make_project("dyno-local-")
    api_port, db_port = free_port(), free_port()
    run = configure(project, api_port, db_port)
    run.api = f"http://127.0.0.1:{api_port}"
    run.db_port = db_port
    yield run
    run("--runtime", "local", "down", "--volumes", "--yes")
    shutil.rmtree(project, ignore_errors=True)


def local(run: Dynoctl, *args, **kw):
    return run("--runtime", "local", *args, **kw)


def local_json(run: Dynoctl, *args):
    result = local(run, "--json", *args)
    return result, json.loads(result.stdout) if result.stdout.strip() else None


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def services(run: Dynoctl) -> dict:
    _, data = local_json(run, "status")
    return {s["service"]: s for s in data["services"]}


def test_full_lifecycle(stack):
    result, data = local_json(stack, "up")
    assert result.exit_code == 0, result.stderr
    assert data["started"] == ["db", "server"]
    assert [r["revision"] for r in data["migrations"]["revisions"]] == ["0001", "0002"]
    assert data["urls"]["api"] == stack.api
    assert http_status(f"{stack.api}/ready") == 200

    # A second up changes nothing.
    server_pid = services(stack)["server"]["detail"]
    result, data = local_json(stack, "up")
    assert result.exit_code == 0
    assert data["started"] == [] and data["already_running"] == ["db", "server"]
    assert data["migrations"]["revisions"] == []
    assert services(stack)["server"]["detail"] == server_pid

    _, status = local_json(stack, "status")
    assert {(s["service"], s["state"], s["health"]) for s in status["services"]} == {
        ("db", "running", "healthy"), ("server", "running", "healthy")}
    assert status["schema"] == {"current": "0002", "head": "0002", "pending": []}
    assert "schema: 0002 (head 0002, up to date)" in local(stack, "status").stdout
    # auto keeps to the runtime this project's stack is running on, engine or not.
    assert json.loads(stack("--json", "status").stdout)["runtime"] == "local"

    _, lines = local_json(stack, "logs", "server", "--tail", "5")
    assert 0 < len(lines) <= 5 and all(r["service"] == "server" for r in lines)
    assert "GET /ready 200" in local(stack, "logs", "server").stdout
    assert "ready to accept connections" in local(stack, "logs", "db").stdout

    assert local(stack, "restart", "server").exit_code == 0
    assert services(stack)["server"]["detail"] != server_pid
    assert http_status(f"{stack.api}/health") == 200

    result = local(stack, "down")
    assert result.exit_code == 0
    assert {s["state"] for s in services(stack).values()} == {"stopped"}
    assert local(stack, "down").exit_code == 0  # nothing running is not an error


def test_migrate_commands(stack):
    assert local(stack, "up").exit_code == 0
    _, st = local_json(stack, "migrate", "status")
    assert st["current"] == st["head"] == "0002"
    _, hist = local_json(stack, "migrate", "history")
    assert [r["revision"] for r in hist] == ["0001", "0002"]

    refused = local(stack, "migrate", "down", "base")  # no TTY, no --yes
    assert refused.exit_code == ExitStatus.REFUSED
    assert "0001" in refused.stderr
    assert local_json(stack, "migrate", "status")[1]["current"] == "0002"  # untouched

    _, plan = local_json(stack, "migrate", "down", "base", "--dry-run")
    assert [r["revision"] for r in plan["revisions"]] == ["0002", "0001"]
    assert local_json(stack, "migrate", "status")[1]["current"] == "0002"

    result, done = local_json(stack, "migrate", "down", "base", "--yes")
    assert result.exit_code == 0 and done["after"] is None
    assert http_status(f"{stack.api}/ready") == 503
    assert [r["revision"] for r in local_json(stack, "migrate", "status")[1]["pending"]] == ["0001", "0002"]

    result = local(stack, "migrate")  # bare migrate = up to head
    assert result.exit_code == 0 and "now at 0002" in result.stdout
    assert http_status(f"{stack.api}/ready") == 200

    assert local(stack, "migrate", "down", "nonexistent", "--yes").exit_code == ExitStatus.USAGE

    # New revisions land in the project's migrations; autogenerate finds the models in sync.
    result, created = local_json(stack, "migrate", "new", "-m", "nothing yet", "--autogenerate")
    assert result.exit_code == 0, result.stderr
    script = Path(created["path"])
    assert script.parent == stack.project / "migrations" / "versions"
    upgrade = script.read_text().split("def upgrade()")[1].split("def downgrade()")[0]
    assert "op." not in upgrade  # nothing to change: models and migrated database agree
    assert [r["revision"] for r in local_json(stack, "migrate", "status")[1]["pending"]] == [script.name.split("_")[0]]


def test_down_volumes_plans_confirms_and_destroys(stack):
    assert local(stack, "up").exit_code == 0
    data_dir = stack.project / ".dyno" / "pg"
    refused = local(stack, "down", "--volumes")
    assert refused.exit_code == ExitStatus.REFUSED
    assert str(data_dir) in refused.stderr and "--yes" in refused.stderr
    assert services(stack)["db"]["state"] == "running"  # refused means nothing happened

    result, data = local_json(stack, "down", "--volumes", "--yes")
    assert result.exit_code == 0
    assert str(data_dir) in data["data_removed"]
    assert not data_dir.exists()


def test_migrate_against_a_stopped_database_names_the_address(stack):
    result = local(stack, "migrate", "status")
    assert result.exit_code == ExitStatus.UNREACHABLE
    assert f"127.0.0.1:{stack.db_port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_taken_port_is_named_and_nothing_is_left_running(stack):
    api_port = int(stack.api.rsplit(":", 1)[1])
    with socket.socket() as squatter:
        # As any server would: connections in TIME_WAIT from earlier tests must not stop it.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", api_port))
        squatter.listen()
        result = local(stack, "up")
    assert result.exit_code == ExitStatus.REFUSED
    assert f"port {api_port}" in result.stderr and f"pid {os.getpid()}" in result.stderr
    assert {s["state"] for s in services(stack).values()} == {"stopped"}


def test_server_crashing_on_start_fails_up_with_its_log(stack):
    keys = stack.project / ".dyno" / "keys" / "jwt-keys.json"
    keys.parent.mkdir(parents=True)
    keys.write_text("{ not json")
    result = local(stack, "up", "--timeout", "60")
    assert result.exit_code == ExitStatus.UNREACHABLE
    assert "exited during start-up" in result.stderr
    assert "key file" in result.stderr  # the server's own complaint, from its log
    assert {s["state"] for s in services(stack).values()} == {"stopped"}


def test_missing_or_invalid_env_file_points_to_env_commands(stack):
    env_file = stack.project / "stack" / "env" / "server.local.env"
    text = env_file.read_text()
    env_file.write_text(text.replace("STATUS=development", "STATUS=staging"))
    result = local(stack, "up")
    assert result.exit_code == ExitStatus.REFUSED and "env check" in result.stderr
    env_file.unlink()
    result = local(stack, "up")
    assert result.exit_code == ExitStatus.REFUSED and "env init" in result.stderr
    assert not (stack.project / ".dyno" / "pg").exists()


def test_stale_pid_files_do_not_confuse_up(stack):
    assert local(stack, "up").exit_code == 0
    assert local(stack, "down").exit_code == 0
    # As after a crash and reboot: pid files naming processes that are not ours.
    run_dir = stack.project / ".dyno" / "run"
    unrelated = psutil.Process(os.getpid())
    for name in ("server.pid", "supervisor.pid"):
        (run_dir / name).write_text(f"{unrelated.pid} {unrelated.create_time() - 1000}\n")
    postmaster = stack.project / ".dyno" / "pg" / "data" / "postmaster.pid"
    postmaster.write_text(f"{os.getpid()}\n/nowhere\n")
    assert {s["state"] for s in services(stack).values()} == {"stopped"}
    result = local(stack, "up")
    assert result.exit_code == 0, result.stderr
    assert http_status(f"{stack.api}/ready") == 200


def test_reload_reaches_the_server_through_its_supervisor(stack):
    """The seam secret rotation builds on: write the key file, runtime.reload("server")."""
    from dynoctl.config import Settings
    from dynoctl.envfiles import write_atomic
    from dynoctl.runtime.local import LocalRuntime

    assert local(stack, "up").exit_code == 0
    before = json.loads(urllib.request.urlopen(f"{stack.api}/health", timeout=5).read())["keyset"]
    keys = {purpose: {"signing": f"{purpose[0]}-1", "keys": [{"kid": f"{purpose[0]}-1", "secret": purpose * 12}]}
            for purpose in ("access", "refresh")}
    (stack.project / ".dyno" / "keys").mkdir(exist_ok=True)
    write_atomic(stack.project / ".dyno" / "keys" / "jwt-keys.json", json.dumps(keys))
    LocalRuntime(Settings(project_dir=stack.project, runtime="local")).reload("server")
    deadline = time.monotonic() + 10
    while json.loads(urllib.request.urlopen(f"{stack.api}/health", timeout=5).read())["keyset"] == before:
        assert time.monotonic() < deadline, "the key set did not change after SIGHUP"
        time.sleep(0.1)
    assert "SIGHUP: key set reloaded" in local(stack, "logs", "server").stdout
