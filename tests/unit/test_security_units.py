"""Units of the secure defaults (issue 8, items 1 and 3): URL passwords in env files,
the database roles against a real PostgreSQL, key file and upload modes."""

from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from dynoctl import dbroles, envfiles, serveruser
from dynoserver.keys import KeyConfigError, KeyStore, keyset_from_file
from dynoserver.storage import FileSink
from tests.conftest import searchable_tempdir

ODD_PASSWORDS = ["p@ss:w/rd%?#&=+ x", "pässwörd-ünïcødé-ß-€", "quote'\"back\\slash;--"]


# ------------------------------------------------------------------- env files
def test_fill_secrets_gives_the_server_its_own_login_and_the_superuser_a_password():
    template = ("POSTGRES_USER=postgres\nPOSTGRES_PASSWORD=changeme\n"
                "DATABASE_URL=postgresql://postgres:postgres@db:5432/pm_app?schema=public\n"
                "OTHER_URL=https://user:changeme@example.com/x\n")
    text, generated = envfiles.fill_secrets(template)
    values = envfiles.parse(text).values
    url = urlsplit(values["DATABASE_URL"])
    assert (url.username, url.hostname, url.port, url.path, url.query) == ("dyno_app_a", "db", 5432, "/pm_app",
                                                                             "schema=public")
    assert len(url.password) >= 43 and len(values["POSTGRES_PASSWORD"]) >= 43
    assert urlsplit(values["OTHER_URL"]).username == "user" and urlsplit(values["OTHER_URL"]).password != "changeme"
    assert set(generated) == {"POSTGRES_PASSWORD", "DATABASE_URL", "OTHER_URL"}


@pytest.mark.parametrize("url", [
    "postgresql://dyno_app_a:postgres@h:5432/pm_app",
    "postgresql://dyno_app_a:PoStGrEs@h:5432/pm_app",
    "postgresql://dyno_app_a:tooshort@h:5432/pm_app",
    "postgresql://dyno_app_a@h:5432/pm_app",
    "https://user:hunter2@example.com/",
])
def test_weak_or_missing_url_passwords_are_errors(url):
    problems = list(envfiles._value_problems("DATABASE_URL" if url.startswith("postgresql") else "SOME_URL", url))
    assert any("password in this URL" in p for p in problems)
    assert all(unquote(urlsplit(url).password or "-") not in p for p in problems if urlsplit(url).password)


def test_strong_url_password_passes():
    url = dbroles.with_credentials("postgresql://h:5432/pm_app", "dyno_app_a", dbroles.new_password())
    assert list(envfiles._value_problems("DATABASE_URL", url)) == []


def test_update_env_file_replaces_keys_keeps_the_rest_and_appends(tmp_path):
    path = tmp_path / "x.env"
    path.write_text("# comment\nA=1\nexport B = 2\nC=3")
    envfiles.update_env_file(path, {"B": "two", "D": "four"})
    assert path.read_text() == "# comment\nA=1\nexport B = two\nC=3\nD=four\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_any_password_survives_a_url(password):
    url = dbroles.with_credentials("postgresql://old:pw@127.0.0.1:5433/pm_app?schema=public", "dyno_app_b", password)
    assert dbroles.active_login(url) == "dyno_app_b"
    assert unquote(urlsplit(url).password) == password
    assert urlsplit(url).query == "schema=public" and urlsplit(url).port == 5433


def test_other_login_alternates():
    assert dbroles.other_login("dyno_app_a") == "dyno_app_b"
    assert dbroles.other_login("dyno_app_b") == "dyno_app_a"
    with pytest.raises(ValueError):
        dbroles.other_login("postgres")


def test_superuser_credentials_of_an_old_file_come_from_its_url():
    old = {"DATABASE_URL": "postgresql://postgres:postgres@h:1/pm_app"}
    assert dbroles.superuser_credentials(old) == ("postgres", "postgres")
    new = {**old, "POSTGRES_PASSWORD": "x" * 40, "DATABASE_URL": "postgresql://dyno_app_a:y@h:1/pm_app"}
    assert dbroles.superuser_credentials(new) == ("postgres", "x" * 40)


# ---------------------------------------------------------- roles (real PostgreSQL)
@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_ensure_app_roles_is_idempotent_and_any_password_logs_in(postgres, password):
    admin = postgres.create_database("roles_probe")
    dbroles.ensure_app_roles(admin, "roles_probe", "dyno_app_b", password)
    dbroles.ensure_app_roles(admin, "roles_probe", "dyno_app_b", password)  # twice: no error
    port = postgres.cluster.port
    with psycopg.connect(host="127.0.0.1", port=port, user="dyno_app_b", password=password,
                         dbname="roles_probe", connect_timeout=5, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("dyno_app_b",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("COPY (SELECT 1) TO PROGRAM 'true'")
    # The plain text never reaches the catalog: PostgreSQL stored the verifier sent.
    with psycopg.connect(postgres.url("roles_probe"), autocommit=True) as conn:
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'dyno_app_b'").fetchone()[0]
        assert stored.startswith("SCRAM-SHA-256$") and password not in stored
        dbroles.disable_login(conn, "dyno_app_b")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=port, user="dyno_app_b", password=password,
                        dbname="roles_probe", connect_timeout=5)


# --------------------------------------------------------------- keys and uploads
def key_document() -> str:
    return json.dumps({p: {"signing": "k1", "keys": [{"kid": "k1", "secret": "s" * 40}]} for p in ("access", "refresh")})


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o622])
def test_key_file_others_can_read_or_anyone_can_change_is_refused(tmp_path, mode):
    path = tmp_path / "keys.json"
    path.write_text(key_document())
    path.chmod(mode)
    with pytest.raises(KeyConfigError, match=f"mode {mode:04o}") as caught:
        keyset_from_file(path)
    assert "s" * 40 not in str(caught.value)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400])
def test_private_or_group_readable_key_file_is_used(tmp_path, mode):
    path = tmp_path / "keys.json"
    path.write_text(key_document())
    path.chmod(mode)
    assert KeyStore(path, None, None).current.access.signing.kid == "k1"


def test_uploads_are_0600_in_0700_directories(tmp_path):
    assets = tmp_path / "data" / "assets"
    sink = FileSink(assets, uuid.uuid4(), 1024)
    sink.write(b"private")
    sink.commit()
    final = assets / sink.storage_path
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    assert stat.S_IMODE(final.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(assets.stat().st_mode) == 0o700


# ---------------------------------------------------------------- server account
def test_blocker_names_the_directory_in_the_way():
    tmp_path = searchable_tempdir("dyno-blocker-")
    closed = tmp_path / "closed"
    inner = closed / "lib"
    inner.mkdir(parents=True)
    (inner / "python").write_text("")
    os.chmod(tmp_path, 0o755)
    os.chmod(closed, 0o700)
    assert serveruser._blocker(inner / "python", stat.S_IROTH) == closed
    os.chmod(closed, 0o711)
    os.chmod(inner / "python", 0o640)
    assert serveruser._blocker(inner / "python", stat.S_IROTH) == inner / "python"
    os.chmod(inner / "python", 0o644)
    assert serveruser._blocker(inner / "python", stat.S_IROTH) is None
    shutil.rmtree(tmp_path)


def test_own_private_dir_fixes_modes_of_older_uploads(tmp_path):
    assets = tmp_path / "assets"
    (assets / "ab").mkdir(parents=True)
    (assets / "ab" / "file").write_text("x")
    os.chmod(assets, 0o755)
    os.chmod(assets / "ab", 0o755)
    os.chmod(assets / "ab" / "file", 0o644)
    serveruser.own_private_dir(assets, None)
    assert [stat.S_IMODE(p.stat().st_mode) for p in (assets, assets / "ab", assets / "ab" / "file")] == \
        [0o700, 0o700, 0o600]


def test_grant_app_privileges_takes_a_sqlalchemy_connection_too(postgres):
    from dynoctl import db

    admin = postgres.create_database("roles_sqlalchemy")
    dbroles.ensure_app_roles(admin, "roles_sqlalchemy", "dyno_app_a", dbroles.new_password())
    with db.connection(admin) as conn:
        conn.exec_driver_sql("CREATE TABLE later_table (id int)")
        dbroles.grant_app_privileges(conn)
        conn.commit()
    with psycopg.connect(admin, autocommit=True) as conn:
        granted = conn.execute("SELECT has_table_privilege('dyno_app', 'later_table', 'INSERT')").fetchone()[0]
    assert granted
