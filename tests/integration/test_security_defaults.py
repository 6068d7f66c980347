"""Secure by default (issue 8, items 1-3) on the real local runtime: the server's own
least-privilege database login, a random superuser password, an old stack moved off
the superuser, who the server runs as, and the modes of uploads, keys and backups."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import psutil
import psycopg
import pytest
from dotenv import dotenv_values

from dynoctl import dbroles
from dynoctl.errors import ExitStatus
from tests.conftest import REPO, Dynoctl, free_port, make_project, searchable_tempdir
from tests.integration.test_local_runtime import configure

ENV = Path("stack") / "env" / "server.local.env"


@pytest.fixture
def stack():
    project = make_project("dyno-secure-")
    api_port, db_port = free_port(), free_port()
    run = configure(project, api_port, db_port)
    run.api, run.db_port = f"http://127.0.0.1:{api_port}", db_port
    yield run
    run("--runtime", "local", "down", "--volumes", "--yes")
    shutil.rmtree(project, ignore_errors=True)


def env_values(run: Dynoctl) -> dict[str, str]:
    return dotenv_values(run.project / ENV, interpolate=False)


def connect(url: str, **kw):
    parts = urlsplit(url)
    return psycopg.connect(host=parts.hostname, port=parts.port, user=unquote(parts.username),
                           password=unquote(parts.password or ""), dbname=parts.path.lstrip("/"),
                           connect_timeout=5, **kw)


def up(run: Dynoctl, *args):
    result = run("--runtime", "local", "up", *args)
    assert result.exit_code == 0, result.stderr
    return result


def superuser_attempts(run: Dynoctl, password: str) -> bool:
    """Whether the superuser logs in with this password."""
    try:
        with connect(f"postgresql://postgres:{password}@127.0.0.1:{run.db_port}/pm_app"):
            return True
    except psycopg.OperationalError:
        return False


def assert_least_privilege(server_url: str) -> None:
    """The server's login cannot run programs, make roles or databases, or change the schema."""
    refused = [
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "CREATE TEMP TABLE probe(line text); COPY probe FROM PROGRAM 'id'",
        "CREATE ROLE intruder LOGIN PASSWORD 'x'",
        "CREATE DATABASE intruder",
        "CREATE TABLE public.intruder(i int)",
        "DROP TABLE users",
        "UPDATE alembic_version SET version_num = 'x'",
        "ALTER ROLE dyno_app_b LOGIN",
        "SELECT pg_read_file('/etc/passwd')",
    ]
    with connect(server_url, autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                            "WHERE rolname = current_user").fetchone() == (False, False, False)
        for statement in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)  # readable


def use_the_app(api: str, tmp_content: bytes = b"%PDF- quarterly numbers") -> dict:
    """register, log in, create a project, upload and download a file."""
    with httpx.Client(base_url=api, timeout=30) as client:
        account = {"email": "owner@example.com", "password": "correct horse battery staple 42"}
        assert client.post("/auth/register", json=account).status_code == 201
        token = client.post("/auth/login", json=account).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        project = client.post("/projects", json={"name": "Roadmap"}, headers=headers)
        assert project.status_code == 201, project.text
        uploaded = client.post(f"/projects/{project.json()['id']}/assets", headers=headers,
                               files={"file": ("q3.pdf", tmp_content, "application/pdf")})
        assert uploaded.status_code == 201, uploaded.text
        content = client.get(f"/projects/{project.json()['id']}/assets/{uploaded.json()['id']}/content",
                             headers=headers)
        assert content.content == tmp_content
        return uploaded.json()


def test_new_stack_gets_random_passwords_and_a_least_privilege_server_login(stack):
    values = env_values(stack)
    assert dbroles.active_login(values["DATABASE_URL"]) == "dyno_app_a"
    assert len(values["POSTGRES_PASSWORD"]) >= 32 and values["POSTGRES_PASSWORD"] != "postgres"
    assert stack("env", "check").exit_code == 0

    up(stack)
    assert env_values(stack) == values  # a new stack's file is already right: nothing rewritten
    assert not superuser_attempts(stack, "postgres")
    assert superuser_attempts(stack, values["POSTGRES_PASSWORD"])
    assert_least_privilege(values["DATABASE_URL"])
    use_the_app(stack.api)
    # The server really is connected as its own login, never the superuser.
    with connect(f"postgresql://postgres:{values['POSTGRES_PASSWORD']}@127.0.0.1:{stack.db_port}/pm_app") as conn:
        users = {row[0] for row in conn.execute(
            "SELECT usename FROM pg_stat_activity WHERE datname = 'pm_app' AND pid <> pg_backend_pid()")}
    assert users == {"dyno_app_a"}
    # ... and its environment does not carry the superuser's password.
    server = psutil.Process(int((stack.project / ".dyno" / "run" / "server.pid").read_text().split()[0]))
    assert values["POSTGRES_PASSWORD"] not in json.dumps(server.environ())

    # Idempotent: a second up (and migrate) keeps the roles and the file.
    up(stack)
    assert stack("--runtime", "local", "migrate").exit_code == 0
    assert env_values(stack) == values


def make_legacy(run: Dynoctl) -> None:
    """The env file as every stack had it before: the server logs in as postgres/postgres."""
    path = run.project / ENV
    lines = [line for line in path.read_text().splitlines(keepends=True) if not line.startswith("POSTGRES_")]
    text = "".join(lines)
    url = next(line for line in lines if line.startswith("DATABASE_URL="))
    legacy = f"DATABASE_URL=postgresql://postgres:postgres@127.0.0.1:{run.db_port}/pm_app?schema=public\n"
    path.write_text(text.replace(url, legacy))
    path.chmod(0o600)


def test_existing_stack_is_moved_off_the_superuser(stack):
    make_legacy(stack)
    check = stack("--json", "env", "check")
    assert check.exit_code == ExitStatus.REFUSED
    problems = json.loads(check.stdout)["problems"]
    assert any(p["key"] == "DATABASE_URL" and "password in this URL" in p["message"] for p in problems)
    assert any(p["key"] == "DATABASE_URL" and "superuser" in p["message"] for p in problems)

    result = up(stack)  # the cluster is made with postgres/postgres, as before; then moved
    assert "no longer logs in as the database superuser" in result.stderr
    assert "dyno_app_a" in result.stderr
    values = env_values(stack)
    for secret in (values["POSTGRES_PASSWORD"], urlsplit(values["DATABASE_URL"]).password):
        assert secret not in result.stdout + result.stderr
    assert dbroles.active_login(values["DATABASE_URL"]) == "dyno_app_a"
    assert not superuser_attempts(stack, "postgres")  # the well-known password is gone too
    assert superuser_attempts(stack, values["POSTGRES_PASSWORD"])
    assert stat.S_IMODE((stack.project / ENV).stat().st_mode) == 0o600
    assert list((stack.project / ENV.parent).glob("server.local.env.bak-*")), "the previous file is kept"
    assert stack("env", "check").exit_code == 0
    assert_least_privilege(values["DATABASE_URL"])

    # The server was started after the move: it logs in as dyno_app_a and works.
    use_the_app(stack.api)
    assert "no longer logs in" not in up(stack).stderr


def test_migrate_moves_a_server_off_the_superuser_and_restarts_it(stack):
    up(stack)
    values = env_values(stack)
    # A server configured by hand with the superuser's (strong) credentials.
    path = stack.project / ENV
    superuser_url = dbroles.with_credentials(values["DATABASE_URL"], "postgres", values["POSTGRES_PASSWORD"])
    path.write_text(path.read_text().replace(values["DATABASE_URL"], superuser_url))

    result = stack("--runtime", "local", "migrate")
    assert result.exit_code == 0, result.stderr
    assert "dyno_app_a" in result.stderr
    moved = env_values(stack)
    assert dbroles.active_login(moved["DATABASE_URL"]) == "dyno_app_a"
    assert moved["DATABASE_URL"] != values["DATABASE_URL"]  # a fresh password
    assert moved["POSTGRES_PASSWORD"] == values["POSTGRES_PASSWORD"]  # strong: kept
    # The running server was restarted onto its new password and still serves.
    use_the_app(stack.api)


def test_weak_passwords_in_any_url_fail_env_check(stack):
    path = stack.project / ENV
    values = env_values(stack)
    for weak in ("postgres", "changeme", "short-but-random"):
        weak_url = dbroles.with_credentials(values["DATABASE_URL"], "dyno_app_a", weak)
        path.write_text(path.read_text().replace(values["DATABASE_URL"], weak_url))
        result = stack("--json", "env", "check")
        assert result.exit_code == ExitStatus.REFUSED, weak
        assert weak not in result.stdout  # the report names the key, never the password
        path.write_text(path.read_text().replace(weak_url, values["DATABASE_URL"]))
    # ... and up refuses to start anything with it.
    weak_url = dbroles.with_credentials(values["DATABASE_URL"], "dyno_app_a", "postgres")
    path.write_text(path.read_text().replace(values["DATABASE_URL"], weak_url))
    assert stack("--runtime", "local", "up").exit_code == ExitStatus.REFUSED


# ----------------------------------------------------------------- file modes
def test_uploads_keys_and_backups_are_private(stack):
    up(stack)
    use_the_app(stack.api)
    state = stack.project / ".dyno"
    assets = state / "assets"
    files = [p for p in assets.rglob("*") if p.is_file()]
    assert files
    for path in [assets, *assets.rglob("*")]:
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
    keys = state / "keys"
    assert keys.is_dir() and not keys.stat().st_mode & 0o007
    assert stat.S_IMODE((state / "backups").stat().st_mode) == 0o700


def test_key_file_readable_by_others_is_refused_and_reported(stack):
    keys = stack.project / ".dyno" / "keys"
    keys.mkdir(parents=True)
    key_file = keys / "jwt-keys.json"
    secret = "k" * 40
    key_file.write_text(json.dumps({p: {"signing": "k1", "keys": [{"kid": "k1", "secret": secret}]}
                                    for p in ("access", "refresh")}))
    key_file.chmod(0o644)
    check = stack("--json", "env", "check")
    assert check.exit_code == ExitStatus.REFUSED
    assert any(p["file"] == str(key_file) and "other users can read it" in p["message"]
               for p in json.loads(check.stdout)["problems"])

    result = stack("--runtime", "local", "up", "--timeout", "60")
    assert result.exit_code == ExitStatus.UNREACHABLE
    assert "other users can read it" in result.stderr  # the server's own refusal, from its log
    assert secret not in result.stderr + (stack.project / ".dyno" / "logs" / "server.log").read_text()


# ----------------------------------------------------------- who runs the server
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the server changes account only when dynoctl runs as root")


def reachable_interpreter(tmp: Path) -> Path | None:
    """A venv other users can run: the system's python3.11 plus this interpreter's
    site-packages when those are reachable, else a copy of dynoctl and its dependencies
    installed under ``tmp`` (CI's interpreter lives under /root, out of their reach), so
    the unprivileged path is exercised everywhere."""
    import importlib.util

    from dynoctl import serveruser

    system = Path("/usr/bin/python3.11")
    if not system.exists() or sys.version_info[:2] != (3, 11):
        return None
    site_packages = Path(importlib.util.find_spec("uvicorn").submodule_search_locations[0]).parent
    if serveruser._blocker(site_packages, stat.S_IROTH | stat.S_IXOTH):
        site_packages = tmp / "site-packages"
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--target", str(site_packages), str(REPO)], check=True, timeout=600)
    venv = tmp / "venv"
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)], check=True)
    pth = venv / "lib" / "python3.11" / "site-packages" / "dyno-test.pth"
    pth.write_text(f"import site; site.addsitedir({str(site_packages)!r})\n")
    return venv / "bin" / "python"


@root_only
def test_server_runs_as_an_unprivileged_account(stack):
    tmp = searchable_tempdir("dyno-venv-")
    try:
        python = reachable_interpreter(tmp)
        if python is None:
            pytest.skip("no interpreter other users can run here: see test_unreachable_interpreter_is_named")
        env = {**os.environ, "DYNO_RUNTIME": "local"}
        env.pop("DYNO_SERVER_USER", None)
        cli = [str(python), "-m", "dynoctl", "--project-dir", str(stack.project)]
        done = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "runs as root" not in done.stderr
        server = psutil.Process(int((stack.project / ".dyno" / "run" / "server.pid").read_text().split()[0]))
        assert server.username() == "dynoctl-server"
        uploaded = use_the_app(stack.api)
        assert uploaded["size"] > 0
        assets = stack.project / ".dyno" / "assets"
        assert {p.owner() for p in [assets, *assets.rglob("*")]} == {"dynoctl-server"}
        # The env file stays root's and private; the server got its values from dynoctl.
        assert (stack.project / ENV).owner() == "root"
        assert stat.S_IMODE((stack.project / ENV).stat().st_mode) == 0o600
        # SIGHUP through the supervisor still reloads the keys: the file is root's, group
        # dynoctl-server (the key dir is setgid), 0640.
        keys = stack.project / ".dyno" / "keys" / "jwt-keys.json"
        keys.write_text(json.dumps({p: {"signing": "k1", "keys": [{"kid": "k1", "secret": "s" * 40}]}
                                    for p in ("access", "refresh")}))
        keys.chmod(0o640)
        assert keys.group() == "dynoctl-server"
        before = httpx.get(f"{stack.api}/health").json()["keyset"]
        supervisor = int((stack.project / ".dyno" / "run" / "supervisor.pid").read_text().split()[0])
        os.kill(supervisor, signal.SIGHUP)
        for _ in range(100):  # bounded: at most ~20 s
            if httpx.get(f"{stack.api}/health").json()["keyset"] != before:
                break
            time.sleep(0.2)
        assert httpx.get(f"{stack.api}/health").json()["keyset"] != before
        subprocess.run([*cli, "down"], env=env, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------- docker
@pytest.mark.docker
def test_docker_stack_has_random_superuser_password_and_least_privilege_server(request):
    from tests.integration.test_docker_runtime import new_docker_project, remove_docker_project

    # This checkout's server, built under a tag of this test's own.
    run = new_docker_project("sec", DYNO_SERVER_IMAGE="dyno-server:security-defaults-test")
    project, env, api_port, db_port = run.project, run.env, run.api.rsplit(":", 1)[1], run.db_port
    try:
        result = run("up", "--build", "--timeout", "600", env=env)
        assert result.exit_code == 0, result.stderr
        values = dotenv_values(project / "stack" / "env" / "server.docker.env", interpolate=False)
        assert dbroles.active_login(values["DATABASE_URL"]) == "dyno_app_a"
        host_url = f"postgresql://127.0.0.1:{db_port}/pm_app"
        with pytest.raises(psycopg.OperationalError):
            connect(dbroles.with_credentials(host_url, "postgres", "postgres"))
        assert_least_privilege(dbroles.with_credentials(host_url, "dyno_app_a",
                                                        unquote(urlsplit(values["DATABASE_URL"]).password)))
        use_the_app(f"http://127.0.0.1:{api_port}")
        with connect(dbroles.with_credentials(host_url, "postgres", values["POSTGRES_PASSWORD"])) as conn:
            users = {row[0] for row in conn.execute(
                "SELECT usename FROM pg_stat_activity WHERE datname = 'pm_app' AND pid <> pg_backend_pid()")}
        assert users == {"dyno_app_a"}
        import docker

        server = docker.from_env().containers.list(filters={"label": [
            f"com.docker.compose.project={env['COMPOSE_PROJECT_NAME']}", "com.docker.compose.service=server"]})[0]
        container_env = dict(item.split("=", 1) for item in server.attrs["Config"]["Env"])
        assert container_env.get("POSTGRES_PASSWORD", "") == ""  # the superuser's password stays out
    finally:
        remove_docker_project(run)


@pytest.mark.docker
def test_docker_stack_from_before_is_moved_off_the_superuser():
    from tests.integration.test_docker_runtime import new_docker_project, remove_docker_project

    run = new_docker_project("secold", DYNO_SERVER_IMAGE="dyno-server:security-defaults-test")
    env, api_port, db_port = run.env, run.api.rsplit(":", 1)[1], run.db_port
    path = run.project / "stack" / "env" / "server.docker.env"
    try:
        # As compose.yml and the env file were: the server is postgres/postgres, and the
        # cluster was created with that password (compose.yml hard-coded it then).
        lines = [line for line in path.read_text().splitlines(keepends=True) if not line.startswith("POSTGRES_")]
        old_url = next(line for line in lines if line.startswith("DATABASE_URL="))
        text = "".join(lines).replace(old_url, "DATABASE_URL=postgresql://postgres:postgres@db:5432/pm_app?schema=public\n")
        path.write_text(text + "POSTGRES_PASSWORD=postgres\n")
        path.chmod(0o600)

        result = run("up", "--build", "--timeout", "600", env=env)
        assert result.exit_code == 0, result.stderr
        assert "no longer logs in as the database superuser" in result.stderr
        values = dotenv_values(path, interpolate=False)
        assert dbroles.active_login(values["DATABASE_URL"]) == "dyno_app_a"
        assert values["POSTGRES_PASSWORD"] != "postgres" and len(values["POSTGRES_PASSWORD"]) >= 43
        host_url = f"postgresql://127.0.0.1:{db_port}/pm_app"
        with pytest.raises(psycopg.OperationalError):
            connect(dbroles.with_credentials(host_url, "postgres", "postgres"))
        assert_least_privilege(dbroles.with_credentials(host_url, "dyno_app_a",
                                                        unquote(urlsplit(values["DATABASE_URL"]).password)))
        use_the_app(f"http://127.0.0.1:{api_port}")  # the server came up on its new login
        assert run("env", "check").exit_code == 0
    finally:
        remove_docker_project(run)
