"""dynoctl env init / check / show, through the CLI, bad input included."""

import os
import stat
import subprocess
from urllib.parse import urlsplit

import pytest

from dynoctl import envfiles
from dynoctl.errors import ExitStatus

SERVER_SECRETS = ("JWT_ACCESS_TOKEN_SECRET", "JWT_REFRESH_TOKEN_SECRET")


def env_dir(project):
    return project / "stack" / "env"


def read(project, name):
    return envfiles.parse((env_dir(project) / f"{name}.env").read_text()).values


def set_value(project, name, key, value):
    path = env_dir(project) / f"{name}.env"
    lines = [f"{key}={value}" if line.startswith(f"{key}=") else line for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


def test_init_creates_every_file_private_with_fresh_secrets(dynoctl, project):
    result, data = dynoctl.json("env", "init")
    assert result.exit_code == 0
    assert sorted((r["file"], r["action"]) for r in data) == sorted(
        (str(env_dir(project) / f"{n}.env"), "created")
        for n in ("client.docker", "client.local", "server.docker", "server.local"))
    for name in ("client.docker", "client.local", "server.docker", "server.local"):
        assert stat.S_IMODE((env_dir(project) / f"{name}.env").stat().st_mode) == 0o600
    secrets = [read(project, n)[k] for n in ("server.local", "server.docker") for k in SERVER_SECRETS]
    assert len(set(secrets)) == 4
    assert all(len(s) >= 43 for s in secrets)  # >= 256 bits in url-safe base64
    # The server's own login with a fresh password, never the superuser (issue 8).
    url = urlsplit(read(project, "server.docker")["DATABASE_URL"])
    assert (url.username, url.hostname, url.port, url.path) == ("dyno_app_a", "db", 5432, "/pm_app")
    assert len(url.password) >= 43 and url.password not in secrets
    assert read(project, "server.docker")["POSTGRES_USER"] == "postgres"
    assert len(read(project, "server.docker")["POSTGRES_PASSWORD"]) >= 43
    assert read(project, "client.docker")["NEXT_INTERNAL_API_BASE_URL"] == "http://server:8000"
    assert dynoctl("env", "check").exit_code == 0


def test_init_never_overwrites_and_force_keeps_a_copy(dynoctl, project):
    dynoctl("env", "init")
    before = (env_dir(project) / "server.local.env").read_text()
    result, data = dynoctl.json("env", "init")
    assert {r["action"] for r in data} == {"kept"}
    assert (env_dir(project) / "server.local.env").read_text() == before

    result, data = dynoctl.json("env", "init", "--force")
    assert result.exit_code == 0
    entry = next(r for r in data if r["file"].endswith("server.local.env"))
    assert entry["action"] == "replaced"
    backup = env_dir(project) / os.path.basename(entry["backup"])
    assert backup.read_text() == before
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert read(project, "server.local")["JWT_ACCESS_TOKEN_SECRET"] not in before


def test_generated_secrets_never_appear_in_any_output(dynoctl, project):
    outputs = [dynoctl("env", "init"), dynoctl("--json", "env", "init", "--force")]
    set_value(project, "server.local", "STATUS", "bogus")  # make check print problems too
    for args in (("env", "check"), ("--json", "env", "check"), ("env", "show"), ("--json", "env", "show"),
                 ("version",), ("-v", "--debug", "env", "show")):
        outputs.append(dynoctl(*args))
    secrets = [v for n in ("server.local", "server.docker") for k, v in read(project, n).items() if k in SERVER_SECRETS]
    backups = [p for p in env_dir(project).glob("*.bak-*")]
    secrets += [v for b in backups for k, v in envfiles.parse(b.read_text()).values.items() if k in SERVER_SECRETS]
    assert len(secrets) == 8
    for result in outputs:
        for secret in secrets:
            assert secret not in result.stdout and secret not in result.stderr


def test_missing_template_directory_is_refused(dynoctl, project):
    for template in env_dir(project).glob("*.example"):
        template.unlink()
    result = dynoctl("env", "init")
    assert result.exit_code == ExitStatus.REFUSED
    assert "no env templates" in result.stderr and "hint:" in result.stderr
    assert result.stdout == ""


@pytest.fixture
def read_only_env_dir(project):
    """stack/env on a read-only file system (root ignores permission bits)."""
    directory = env_dir(project)
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    templates = {p.name: p.read_text() for p in directory.glob("*.example")}
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(directory)], check=True)
    try:
        for name, text in templates.items():
            (directory / name).write_text(text)
        subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_unwritable_directory_fails_cleanly(dynoctl, read_only_env_dir):
    result = dynoctl("env", "init")
    assert result.exit_code == ExitStatus.FAILED
    assert "cannot write" in result.stderr and "hint:" in result.stderr
    assert sorted(p.name for p in read_only_env_dir.iterdir()) == sorted(
        p.name for p in read_only_env_dir.glob("*.example"))


def test_check_reports_every_problem_at_once(dynoctl, project):
    dynoctl("env", "init")
    path = env_dir(project) / "server.local.env"
    values = read(project, "server.local")
    path.write_text("\n".join([
        "PORT=70000",
        "DATABASE_URL=mysql://nope",
        "JWT_ACCESS_TOKEN_SECRET=changeme",
        "JWT_REFRESH_TOKEN_SECRET=short",
        "FRONTEND_URL=http://localhost:3000/app",
        "STATUS=staging",
        "this line is not an assignment",
        "EXTRA_THING=1",
        f"ASSETS_DIR={values['ASSETS_DIR']}",
    ]) + "\n")
    path.chmod(0o644)
    result, data = dynoctl.json("env", "check")
    assert result.exit_code == ExitStatus.REFUSED
    assert data["ok"] is False
    mine = [p for p in data["problems"] if p["file"] == str(path)]
    by_key = {(p["key"], p["severity"]) for p in mine}
    for key in ("PORT", "DATABASE_URL", "JWT_ACCESS_TOKEN_SECRET", "JWT_REFRESH_TOKEN_SECRET", "FRONTEND_URL",
                "STATUS", "JWT_KEYS_FILE", "MAX_UPLOAD_BYTES"):
        assert (key, "error") in by_key, key
    assert ("EXTRA_THING", "warning") in by_key
    assert any(p["line"] == 7 and "cannot parse" in p["message"] for p in mine)
    assert any("mode 0644" in p["message"] for p in mine)
    # The other files are fine and reported as such.
    assert all(p["file"] == str(path) for p in data["problems"])


def test_check_flags_equal_secrets_and_missing_files(dynoctl, project):
    dynoctl("env", "init")
    same = "x" * 40
    set_value(project, "server.docker", "JWT_ACCESS_TOKEN_SECRET", same)
    set_value(project, "server.docker", "JWT_REFRESH_TOKEN_SECRET", same)
    (env_dir(project) / "client.local.env").unlink()
    result, data = dynoctl.json("env", "check")
    assert result.exit_code == ExitStatus.REFUSED
    messages = [p["message"] for p in data["problems"]]
    assert any("are equal" in m for m in messages)
    assert any(m.startswith("missing: run 'dynoctl env init'") for m in messages)
    table = dynoctl("env", "check")
    assert "are equal" in table.stdout and "error:" in table.stderr


def test_show_redacts_and_names_sources(dynoctl, project):
    dynoctl("env", "init")
    set_value(project, "server.local", "DATABASE_URL", "postgresql://postgres:hunter2hunter2@127.0.0.1:5433/pm_app")
    lines = (env_dir(project) / "server.local.env").read_text().splitlines()
    (env_dir(project) / "server.local.env").write_text(
        "\n".join(l for l in lines if not l.startswith("MAX_UPLOAD_BYTES=")) + "\n")
    result, data = dynoctl.json("env", "show", env={"STATUS": "production"})
    rows = {(r["file"].rsplit("/", 1)[-1], r["key"]): r for r in data}
    assert rows[("server.local.env", "JWT_ACCESS_TOKEN_SECRET")]["value"] == "********"
    assert rows[("server.local.env", "DATABASE_URL")]["value"] == "postgresql://postgres:****@127.0.0.1:5433/pm_app"
    assert rows[("server.local.env", "MAX_UPLOAD_BYTES")]["source"] == "default"
    assert rows[("server.local.env", "STATUS")] == {**rows[("server.local.env", "STATUS")],
                                                   "value": "production", "source": "environment"}
    assert rows[("server.docker.env", "STATUS")]["source"] == "file"  # docker takes the file as it is
    assert "hunter2" not in result.stdout + result.stderr
