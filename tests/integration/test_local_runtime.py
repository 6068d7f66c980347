"""The local runtime for real: embedded PostgreSQL, the real server process, every
lifecycle command, and the faults a user meets."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
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


def test_invalid_env_file_refuses_up_and_a_missing_one_is_created(stack):
    env_file = stack.project / "stack" / "env" / "server.local.env"
    text = env_file.read_text()
    env_file.write_text(text.replace("STATUS=development", "STATUS=staging"))
    result = local(stack, "up")
    assert result.exit_code == ExitStatus.REFUSED and "env check" in result.stderr
    assert not (stack.project / ".dyno" / "pg").exists()
    # A missing env file is made from its template with fresh secrets, as 'env init' does
    # (the template moved to this test's free ports first).
    env_file.unlink()
    template = env_file.with_name("server.local.env.example")
    api_port, db_port = stack.api.rsplit(":", 1)[1], stack.db_port
    template.write_text(template.read_text().replace("PORT=8000", f"PORT={api_port}")
                        .replace("127.0.0.1:5433", f"127.0.0.1:{db_port}"))
    result, data = local_json(stack, "up")
    assert result.exit_code == 0, result.stderr
    assert f"created {env_file} from its template, with fresh secrets" in result.stderr
    assert data["env_files_created"] == [str(env_file)]
    assert "changeme" not in env_file.read_text()


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


# ------------------------------------------------------------ faults (issue 7)
def cli(project: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "dynoctl", "--project-dir", str(project), *args]


def child_env(**extra) -> dict:
    return {**os.environ, "DYNO_RUNTIME": "local", "DYNO_JSON": "", **extra}


def run_cli(project: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(cli(project, *args), capture_output=True, text=True, env=child_env(), timeout=timeout)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@contextlib.contextmanager
def lock_held_elsewhere(project: Path):
    """Another process holding the project lock, as a running 'dynoctl up' would."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom dynoctl.lock import project_lock\n"
            "with project_lock(Path(sys.argv[1]), 'dynoctl up'):\n    print('held', flush=True)\n    time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(project / ".dyno")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_every_changing_command_is_busy_while_another_holds_the_lock(stack):
    with lock_held_elsewhere(stack.project) as holder:
        for args in (["up"], ["down"], ["restart"], ["migrate", "up"], ["migrate", "down", "base", "--yes"],
                     ["migrate", "new", "-m", "x"], ["env", "init", "--force"], ["up", "--wait", "0.5"]):
            done = run_cli(stack.project, *args)
            assert done.returncode == ExitStatus.BUSY, (args, done.stderr)
            assert f"pid {holder.pid}" in done.stderr and "'dynoctl up'" in done.stderr, done.stderr
        assert "waiting for the project lock" in done.stderr  # --wait, given after the subcommand
    assert not list((stack.project / "migrations" / "versions").glob("*_x.py"))
    assert run_cli(stack.project, "migrate", "new", "-m", "x").returncode == 0  # released with its holder


def test_up_and_down_half_a_second_apart_leave_no_orphan(stack):
    up = subprocess.Popen(cli(stack.project, "up"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=child_env())
    time.sleep(0.5)
    down = run_cli(stack.project, "down")
    up_out, up_err = up.communicate(timeout=180)
    assert down.returncode in (0, ExitStatus.BUSY), down.stderr
    api_port = int(stack.api.rsplit(":", 1)[1])
    states = {s["state"] for s in services(stack).values()}
    if down.returncode == ExitStatus.BUSY:  # the usual case: a cold up takes longer than 0.5 s
        assert "'dynoctl up'" in down.stderr
        assert up.returncode == 0, up_err
        assert states == {"running"} and http_status(f"{stack.api}/ready") == 200
    else:
        assert states == {"stopped"} and port_is_free(api_port)
    assert local(stack, "down").exit_code == 0
    assert port_is_free(api_port) and {s["state"] for s in services(stack).values()} == {"stopped"}


def test_two_cold_ups_at_once(stack):
    ups = [subprocess.Popen(cli(stack.project, "up"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env()) for _ in range(2)]
    results = [(p.wait(timeout=180), p.stderr.read()) for p in ups]
    assert sorted(code for code, _ in results) == [0, ExitStatus.BUSY], results
    assert "initdb" not in "".join(err for _, err in results)
    assert http_status(f"{stack.api}/ready") == 200


INTERRUPTIONS = [(0.3, signal.SIGINT), (0.6, signal.SIGTERM), (0.9, signal.SIGKILL), (1.3, signal.SIGINT),
                 (1.8, signal.SIGTERM), (2.4, signal.SIGKILL), (3.2, signal.SIGINT), (4.5, signal.SIGTERM)]


def test_a_cold_up_interrupted_at_any_point_is_recoverable(stack):
    """Ctrl-C, SIGTERM or kill -9 at many moments of a cold up: a SIGINT/SIGTERM run says
    'interrupted' (130) and leaves nothing running that it started; after any of them
    the next up completes."""
    datadir = stack.project / ".dyno" / "pg" / "data"
    for delay, signum in INTERRUPTIONS:
        child = subprocess.Popen(cli(stack.project, "up"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=child_env())
        time.sleep(delay)
        child.send_signal(signum)
        _out, err = child.communicate(timeout=120)
        where = f"{signum.name} after {delay}s: {err}"
        if signum != signal.SIGKILL:
            assert child.returncode in (0, ExitStatus.INTERRUPTED), where
            assert "Traceback" not in err, where
            if child.returncode == ExitStatus.INTERRUPTED:
                assert "interrupted" in err, where
                assert {s["state"] for s in services(stack).values()} == {"stopped"}, where
        assert datadir.exists() == (datadir / "PG_VERSION").exists(), where  # never a half-made cluster
        again = run_cli(stack.project, "up")
        assert again.returncode == 0, f"{where}\nnext up: {again.stderr}"
        assert http_status(f"{stack.api}/ready") == 200
        assert run_cli(stack.project, "down", "--volumes", "--yes").returncode == 0


def test_stop_and_inspect_work_whatever_the_env_file_and_a_refused_restart_changes_nothing(stack):
    assert local(stack, "up").exit_code == 0
    env_file = stack.project / "stack" / "env" / "server.local.env"
    server_pid = services(stack)["server"]["detail"]
    env_file.chmod(0o644)
    refused = local(stack, "restart", "server")
    assert refused.exit_code == ExitStatus.REFUSED and "0644" in refused.stderr
    assert services(stack)["server"]["detail"] == server_pid and http_status(f"{stack.api}/ready") == 200

    result, data = local_json(stack, "status")
    assert result.exit_code == 0 and "0644" in result.stderr and "warning" in result.stderr
    assert {s["state"] for s in data["services"]} == {"running"} and data["warnings"]
    assert local(stack, "logs", "db", "--tail", "1").exit_code == 0
    env_file.chmod(0o600)

    # The env file as the one source: a variable of the same name changes nothing.
    _, data = local_json(stack, "status")
    api_port = stack.api.rsplit(":", 1)[1]
    shown = json.loads(local(stack, "--json", "status", env={"PORT": "9000"}).stdout)
    assert {s["service"]: s["address"] for s in shown["services"]}["server"] == f"127.0.0.1:{api_port}"

    env_file.rename(env_file.with_suffix(".moved"))  # missing
    result = local(stack, "status")
    assert result.exit_code == 0 and "does not exist" in result.stderr
    result = local(stack, "down")
    assert result.exit_code == 0, result.stderr
    env_file.with_suffix(".moved").rename(env_file)
    assert {s["state"] for s in services(stack).values()} == {"stopped"}


def test_status_tells_a_crashed_server_and_a_dead_supervisor(stack):
    assert local(stack, "up").exit_code == 0
    run_dir = stack.project / ".dyno" / "run"
    supervisor = psutil.Process(int((run_dir / "supervisor.pid").read_text().split()[0]))
    server = psutil.Process(int((run_dir / "server.pid").read_text().split()[0]))

    # Make every restart fail: a malformed key file, then the running server dies.
    keys = stack.project / ".dyno" / "keys" / "jwt-keys.json"
    keys.parent.mkdir(exist_ok=True)
    keys.write_text("{ not json")
    server.kill()
    deadline = time.monotonic() + 90
    while services(stack)["server"]["state"] != "crashed":
        assert time.monotonic() < deadline, services(stack)["server"]
        time.sleep(0.5)
    crashed = services(stack)["server"]
    assert "times in a row" in crashed["detail"] and "last exit status" in crashed["detail"]
    assert "crashed" in local(stack, "status").stdout
    assert not supervisor.is_running()

    keys.unlink()
    assert local(stack, "restart", "server").exit_code == 0
    assert services(stack)["server"]["state"] == "running"
    supervisor = psutil.Process(int((run_dir / "supervisor.pid").read_text().split()[0]))
    supervisor.kill()
    supervisor.wait(10)
    server_status = services(stack)["server"]
    assert server_status["state"] == "running" and "supervisor is gone" in server_status["detail"]
    assert local(stack, "down").exit_code == 0
    assert {s["state"] for s in services(stack).values()} == {"stopped"}


def test_reports_tell_the_truth(stack):
    # up --no-migrate with a pending revision says so in its result.
    result, data = local_json(stack, "up", "--no-migrate")
    assert result.exit_code == 0, result.stderr
    assert [r["revision"] for r in data["pending"]] == ["0001", "0002"]
    assert "pending" in local(stack, "up", "--no-migrate").stdout

    # restart waits for ready, and fails while the server cannot be (schema behind).
    result = local(stack, "restart", "server", "--timeout", "8")
    assert result.exit_code == ExitStatus.UNREACHABLE and "ready" in result.stderr

    # A dry run speaks of a plan.
    assert local(stack, "migrate").exit_code == 0
    result, plan = local_json(stack, "migrate", "down", "base", "--dry-run")
    assert plan["dry_run"] is True and [r["revision"] for r in plan["revisions"]] == ["0002", "0001"]
    assert "plan" in local(stack, "migrate", "down", "base", "--dry-run").stdout
    assert local_json(stack, "migrate", "status")[1]["current"] == "0002"

    # migrate new, then migrate: the server follows the scripts' new head and is ready.
    result, created = local_json(stack, "migrate", "new", "-m", "add nothing")
    assert result.exit_code == 0, result.stderr
    assert http_status(f"{stack.api}/ready") == 503  # the database is now behind the scripts
    # alembic's own words when autogenerate meets a database behind head.
    behind = local(stack, "migrate", "new", "-m", "too early", "--autogenerate")
    assert behind.exit_code == ExitStatus.FAILED
    assert "not up to date" in behind.stderr and "unexpected" not in behind.stderr
    assert local(stack, "migrate").exit_code == 0
    assert http_status(f"{stack.api}/ready") == 200

    # -v tells each step; -vv also every program run (argv only).
    verbose, very = run_cli(stack.project, "-v", "status"), run_cli(stack.project, "status", "-vv")
    assert "pg_isready" not in verbose.stderr and "run: " in very.stderr and "pg_isready" in very.stderr

    # env init --force on a running stack: the server keeps the old values until restarted.
    result = local(stack, "env", "init", "--force")
    assert result.exit_code == 0 and "until restarted" in result.stderr
