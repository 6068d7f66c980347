"""dynoctl rotate-secrets for real: the local runtime with two server workers, the
embedded PostgreSQL, and a steady authenticated load from another process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import jwt
import psutil
import pytest

from dynoctl.errors import ExitStatus
from tests.conftest import REPO, Dynoctl, free_port, make_project

FAST_HASHING = "ARGON2_TIME_COST=1\nARGON2_MEMORY_KIB=8\nARGON2_PARALLELISM=1\n"
PASSWORD = "correct horse battery staple"


def configure(project: Path, workers: int = 2) -> Dynoctl:
    run = Dynoctl(project)
    assert run("env", "init").exit_code == 0
    api_port, db_port = free_port(), free_port()
    path = project / "stack" / "env" / "server.local.env"
    text = path.read_text().replace("PORT=8000", f"PORT={api_port}").replace("127.0.0.1:5433", f"127.0.0.1:{db_port}")
    path.write_text(text + FAST_HASHING + f"WEB_CONCURRENCY={workers}\n")
    run.api, run.env_path = f"http://127.0.0.1:{api_port}", path
    run.keys_path = project / ".dyno" / "keys" / "jwt-keys.json"
    return run


@pytest.fixture
def stack():
    project = make_project("dyno-rotation-")
    run = configure(project)
    yield run
    run("--runtime", "local", "down", "--volumes", "--yes")
    shutil.rmtree(project, ignore_errors=True)


def local(run: Dynoctl, *args: str):
    return run("--runtime", "local", *args)


def env_values(run: Dynoctl) -> dict[str, str]:
    from dynoctl import envfiles

    return envfiles.parse(run.env_path.read_text()).values


def login(api: str, email: str) -> dict:
    with httpx.Client(base_url=api, timeout=10) as client:
        assert client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
        return client.post("/auth/login", json={"email": email, "password": PASSWORD}).json()


def all_workers_reported(api: str, timeout: float = 60) -> dict:
    """/health once every worker has reported (/ready answered from one of them)."""
    deadline = time.monotonic() + timeout
    while True:
        health = httpx.get(f"{api}/health").json()
        if len(health["workers"]) >= health["workers_expected"] or time.monotonic() > deadline:
            return health
        time.sleep(0.2)


def me(api: str, access_token: str) -> int:
    return httpx.get(f"{api}/auth/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=10).status_code


class Load:
    """tests/integration/rotation_load.py in its own process, stopped by a file."""

    def __init__(self, api: str, workdir: Path):
        self.stop_file, self.out_file = workdir / "stop", workdir / "load.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.rotation_load", api, str(self.stop_file), str(self.out_file),
             "20000", "240"], cwd=REPO)
        deadline = time.monotonic() + 60
        while not self.out_file.with_suffix(".ready").exists():
            assert self.process.poll() is None and time.monotonic() < deadline, "the load did not start"
            time.sleep(0.1)

    def stop(self) -> dict:
        self.stop_file.write_text("1")
        self.process.wait(timeout=60)
        return json.loads(self.out_file.read_text())


def secret_values(run: Dynoctl, extra: list[str]) -> set[str]:
    values = env_values(run)
    found = {v for k, v in values.items() if k.endswith(("_SECRET", "_PASSWORD"))}
    found.add(unquote(urlsplit(values["DATABASE_URL"]).password or ""))
    if run.keys_path.exists():
        document = json.loads(run.keys_path.read_text())
        found |= {k["secret"] for p in ("access", "refresh") for k in document[p]["keys"]}
    return {s for s in found | set(extra) if s}


def test_rotation_under_load_logs_no_one_out(stack, tmp_path):
    up = local(stack, "up")
    assert up.exit_code == 0, up.stderr
    health = all_workers_reported(stack.api)
    assert health["workers_expected"] == 2 and len(health["workers"]) == 2
    worker_pids = {w["pid"] for w in health["workers"]}
    old_env = env_values(stack)
    old_db_url = old_env["DATABASE_URL"]
    before = login(stack.api, "before@example.com")
    seen_secrets = set(secret_values(stack, []))

    load = Load(stack.api, tmp_path)
    try:
        time.sleep(1)
        jwt_run = local(stack, "rotate-secrets", "--yes")
        assert jwt_run.exit_code == 0, jwt_run.stderr
        seen_secrets |= secret_values(stack, [])
        db_run = local(stack, "rotate-secrets", "--db-password", "--yes")
        assert db_run.exit_code == 0, db_run.stderr
        seen_secrets |= secret_values(stack, [])
        time.sleep(1)
    finally:
        outcome = load.stop()

    assert outcome["requests"] > 50
    assert outcome["failures"] == []

    # The JWT keys: new signing keys, the migrated env keys still verify (grace).
    document = json.loads(stack.keys_path.read_text())
    from dynoserver.keys import derive_kid

    for purpose, variable in (("access", "JWT_ACCESS_TOKEN_SECRET"), ("refresh", "JWT_REFRESH_TOKEN_SECRET")):
        kids = [k["kid"] for k in document[purpose]["keys"]]
        assert derive_kid(purpose, old_env[variable]) in kids and len(kids) == 2
        assert document[purpose]["signing"] != derive_kid(purpose, old_env[variable])
        assert "pending" not in document[purpose]
    health = httpx.get(f"{stack.api}/health").json()
    assert {w["keyset"] for w in health["workers"]} == {health["keyset"]} and len(health["workers"]) == 2
    assert {w["pid"] for w in health["workers"]} == worker_pids  # reloaded in place, never restarted

    # Users logged in before: the access token works, the refresh token exchanges and
    # comes back signed with the new key.
    assert me(stack.api, before["access_token"]) == 200
    refreshed = httpx.post(f"{stack.api}/auth/refresh", json={"refresh_token": before["refresh_token"]}).json()
    assert jwt.get_unverified_header(refreshed["refresh_token"])["kid"] == document["refresh"]["signing"]
    assert jwt.get_unverified_header(refreshed["access_token"])["kid"] == document["access"]["signing"]

    # The database login moved, the old one no longer logs in.
    new_db_url = env_values(stack)["DATABASE_URL"]
    assert urlsplit(new_db_url).username != urlsplit(old_db_url).username
    assert {w["db_login"] for w in health["workers"]} == {urlsplit(new_db_url).username}
    import psycopg

    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(old_db_url.split("?")[0], connect_timeout=5).close()
    psycopg.connect(new_db_url.split("?")[0], connect_timeout=5).close()

    # After the grace (the clock moved past it), --prune's work rejects the old tokens.
    from dynoctl import rotation
    from dynoctl.config import Settings
    from dynoctl.runtime.local import LocalRuntime

    settings = Settings(project_dir=stack.project, runtime="local")
    runtime = LocalRuntime(settings)
    options = rotation.RotationOptions(purposes=(), prune_only=True)
    plan = rotation.make_plan(runtime, settings.layout, options, now=time.time() + 604800 + 301)
    assert len(plan.prune) == 2
    result = rotation.apply(plan, runtime, settings.layout, options, clock=lambda: time.time() + 604800 + 301)
    assert len(result.pruned) == 2
    assert me(stack.api, before["access_token"]) == 401
    assert me(stack.api, refreshed["access_token"]) == 200

    # No secret value in any output or log.
    outputs = up.stdout + up.stderr + jwt_run.stdout + jwt_run.stderr + db_run.stdout + db_run.stderr
    logs = [stack.project / ".dyno" / "logs" / "server.log", stack.project / ".dyno" / "pg" / "postgres.log",
            stack.project / ".dyno" / "history.jsonl"]
    text = outputs + "".join(p.read_text(errors="replace") for p in logs if p.exists())
    leaked = [s for s in seen_secrets if s in text]
    assert leaked == []


def test_dry_run_confirmation_lock_and_unreachable_server(stack):
    assert local(stack, "up").exit_code == 0
    env_before = stack.env_path.read_text()

    dry = local(stack, "--json", "rotate-secrets", "--access", "--refresh", "--db-password", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["rotate"] == ["access", "refresh"] and plan["migrate_from_env"] is True
    assert plan["db_password"] == "dyno_app_a -> dyno_app_b" and plan["server_running"] is True
    assert not stack.keys_path.exists() and stack.env_path.read_text() == env_before
    assert not any(s in dry.stdout + dry.stderr for s in secret_values(stack, []))

    refused = local(stack, "rotate-secrets")  # no TTY, no --yes
    assert refused.exit_code == ExitStatus.REFUSED and not stack.keys_path.exists()

    from dynoctl.lock import project_lock

    with project_lock(stack.project / ".dyno", "test holds the lock"):
        assert local(stack, "rotate-secrets", "--yes").exit_code == ExitStatus.BUSY

    # The first rotation creates the key file; then a frozen server cannot confirm:
    # nothing is promoted and the pending keys are taken out again.
    assert local(stack, "rotate-secrets", "--yes").exit_code == 0
    document_before = json.loads(stack.keys_path.read_text())
    server = psutil.Process(int((stack.project / ".dyno" / "run" / "server.pid").read_text().split()[0]))
    frozen = [server, *server.children(recursive=True)]
    for p in frozen:
        p.send_signal(signal.SIGSTOP)
    try:
        timed_out = local(stack, "rotate-secrets", "--yes", "--timeout", "2")
    finally:
        for p in frozen:
            p.send_signal(signal.SIGCONT)
    assert timed_out.exit_code == ExitStatus.UNREACHABLE, timed_out.stderr
    assert "nothing was promoted" in timed_out.stderr
    assert json.loads(stack.keys_path.read_text()) == document_before

    # A corrupt key file refuses (exit 3) and is left alone.
    stack.keys_path.write_text("{not json")
    corrupt = local(stack, "rotate-secrets", "--yes")
    assert corrupt.exit_code == ExitStatus.REFUSED and "corrupt" in corrupt.stderr
    assert stack.keys_path.read_text() == "{not json"


def test_server_not_running_rotates_the_files_and_resumes_a_cut_short_run(stack):
    from dynoctl import rotation

    assert local(stack, "rotate-secrets", "--yes").exit_code == 0  # nothing runs: files only
    document = json.loads(stack.keys_path.read_text())
    assert all(len(document[p]["keys"]) == 2 for p in rotation.PURPOSES)
    assert oct(stack.keys_path.stat().st_mode & 0o777) == "0o600"

    # A run killed after phase 1: the file says so; the next run promotes it.
    rotation.add_pending(document, "access", time.time())
    pending = document["access"]["pending"]
    stack.keys_path.write_text(json.dumps(document))
    result = local(stack, "--json", "rotate-secrets", "--refresh", "--yes")
    assert result.exit_code == 0, result.stderr
    document = json.loads(stack.keys_path.read_text())
    assert document["access"]["signing"] == pending and "pending" not in document["access"]
    assert "not running" in result.stderr

    (stack.env_path).chmod(0o000)
    try:
        if os.geteuid() != 0:  # root reads anything
            assert local(stack, "rotate-secrets", "--yes").exit_code == ExitStatus.REFUSED
    finally:
        stack.env_path.chmod(0o600)
    stack.env_path.unlink()
    missing = local(stack, "rotate-secrets", "--yes")
    assert missing.exit_code == ExitStatus.REFUSED and "env init" in missing.stderr


def test_secret_ages_warn_past_the_limit(stack):
    from dynoctl import rotation
    from dynoctl.config import locate_stack

    layout = locate_stack(stack.project)
    ages = rotation.secret_ages(layout, max_days=90, now=time.time() + 100 * 86400)
    names = {a.name for a in ages if a.file.endswith("server.local.env")}
    assert {"JWT_ACCESS_TOKEN_SECRET", "JWT_REFRESH_TOKEN_SECRET", "DATABASE_URL"} <= names
    assert all(a.stale for a in ages)
    assert re.search(r"JWT_ACCESS_TOKEN_SECRET .* 100 days old", "\n".join(rotation.stale_warnings(ages, 90)))
    assert not any(a.stale for a in rotation.secret_ages(layout, max_days=90))


def test_superuser_rotation_and_database_faults(stack):
    import psycopg

    assert local(stack, "up").exit_code == 0
    before = env_values(stack)
    port = urlsplit(before["DATABASE_URL"]).port
    old_admin = f"postgresql://{before.get('POSTGRES_USER') or 'postgres'}@127.0.0.1:{port}/pm_app"

    result = local(stack, "rotate-secrets", "--db-superuser", "--yes")
    assert result.exit_code == 0, result.stderr
    after = env_values(stack)
    assert after["POSTGRES_PASSWORD"] != before["POSTGRES_PASSWORD"]
    assert after["DATABASE_URL"] == before["DATABASE_URL"]  # the server's login is another matter
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(old_admin, password=before["POSTGRES_PASSWORD"], connect_timeout=5).close()
    psycopg.connect(old_admin, password=after["POSTGRES_PASSWORD"], connect_timeout=5).close()
    assert local(stack, "migrate", "status").exit_code == 0  # dynoctl's own connections moved with it
    assert before["POSTGRES_PASSWORD"] not in result.stdout + result.stderr

    # A failure after ALTER ROLE (the env file cannot be written): the new login is
    # switched off again and the server keeps its login.
    from dynoctl import envfiles, rotation
    from dynoctl.config import Settings
    from dynoctl.errors import DynoctlError
    from dynoctl.runtime.local import LocalRuntime

    def unwritable(path, updates):
        raise DynoctlError(f"cannot write in {path.parent}: Permission denied")

    settings = Settings(project_dir=stack.project, runtime="local")
    runtime = LocalRuntime(settings)
    options = rotation.RotationOptions(purposes=(), db_password=True)
    plan = rotation.make_plan(runtime, settings.layout, options)
    original = envfiles.update_env_file
    envfiles.update_env_file = unwritable
    try:
        with pytest.raises(DynoctlError, match="cannot write"):
            rotation.apply(plan, runtime, settings.layout, options)
    finally:
        envfiles.update_env_file = original
    assert env_values(stack)["DATABASE_URL"] == after["DATABASE_URL"]
    with psycopg.connect(old_admin, password=after["POSTGRES_PASSWORD"]) as conn:
        can_login = dict(conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'dyno_app_%'"))
    assert can_login == {"dyno_app_a": True, "dyno_app_b": False}
    assert httpx.get(f"{stack.api}/ready").status_code == 200

    # A run cut short after enabling the other login: the database says so, and the next
    # run (any rotation) disables it before doing its own work.
    from dynoctl import dbroles

    dbroles.ensure_app_roles(runtime.database_url(), "pm_app", "dyno_app_b", secrets_token())
    resumed = local(stack, "rotate-secrets", "--yes")
    assert resumed.exit_code == 0, resumed.stderr
    assert "interrupted" in resumed.stderr
    with psycopg.connect(old_admin, password=after["POSTGRES_PASSWORD"]) as conn:
        can_login = dict(conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'dyno_app_%'"))
    assert can_login == {"dyno_app_a": True, "dyno_app_b": False}

    # Database down: exit 4, nothing changed.
    assert local(stack, "down").exit_code == 0
    down = local(stack, "rotate-secrets", "--db-password", "--yes")
    assert down.exit_code == ExitStatus.UNREACHABLE, down.stderr
    assert env_values(stack) == after


def secrets_token() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def test_revoke_all_rejects_every_token_and_session(stack):
    assert local(stack, "up").exit_code == 0
    assert local(stack, "rotate-secrets", "--yes").exit_code == 0
    tokens = login(stack.api, "victim@example.com")

    refused = local(stack, "rotate-secrets", "--revoke-all")  # no TTY, no --yes: never
    assert refused.exit_code == ExitStatus.REFUSED and "REVOKE EVERY SESSION" in refused.stderr
    assert me(stack.api, tokens["access_token"]) == 200

    result = local(stack, "--json", "rotate-secrets", "--revoke-all", "--yes")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["sessions_revoked"] >= 1
    document = json.loads(stack.keys_path.read_text())
    assert all(len(document[p]["keys"]) == 1 for p in ("access", "refresh"))
    assert me(stack.api, tokens["access_token"]) == 401
    assert httpx.post(f"{stack.api}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    assert login(stack.api, "after@example.com")["access_token"]  # new logins work at once
