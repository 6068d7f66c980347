"""rotation's key-file bookkeeping and worker agreement, without a server."""

from __future__ import annotations

import json
import secrets

import pytest

from dynoctl import rotation
from dynoctl.rotation import Target
from dynoserver.workers import worker_count
from dynoserver.keys import derive_kid, keyset_from_document, keyset_from_secrets

ENV = {"JWT_ACCESS_TOKEN_SECRET": secrets.token_urlsafe(48), "JWT_REFRESH_TOKEN_SECRET": secrets.token_urlsafe(48)}


def test_the_first_key_file_is_the_env_key_set():
    document = rotation.document_from_env(ENV, now=0)
    expected = keyset_from_secrets(ENV["JWT_ACCESS_TOKEN_SECRET"], ENV["JWT_REFRESH_TOKEN_SECRET"])
    assert rotation.version_of(document) == expected.version
    assert document["access"]["signing"] == derive_kid("access", ENV["JWT_ACCESS_TOKEN_SECRET"])


def test_pending_then_promote_then_prune():
    document = rotation.document_from_env(ENV, now=0)
    old = document["access"]["signing"]
    kid = rotation.add_pending(document, "access", now=100)
    keyset = keyset_from_document(document)
    assert keyset.access.signing.kid == old and kid in keyset.access.by_kid  # verify-only
    assert len(document["access"]["keys"][-1]["secret"].encode()) >= 32
    assert rotation.promote(document, "access", now=200, grace=1000) == kid
    assert document["access"]["signing"] == kid and "pending" not in document["access"]
    assert rotation.expired(document, now=1199) == []
    assert rotation.prune(document, now=1200) == [old]
    assert [k["kid"] for k in document["access"]["keys"]] == [kid]


def test_drop_pending_restores_the_previous_key_set():
    document = rotation.document_from_env(ENV, now=0)
    before = rotation.version_of(document)
    rotation.add_pending(document, "refresh", now=1)
    rotation.drop_pending(document, "refresh")
    assert rotation.version_of(document) == before


def test_write_document_is_atomic_keeps_a_copy_and_reads_back(tmp_path):
    target = Target(tmp_path / "server.local.env", tmp_path / "keys" / "jwt-keys.json",
                    tmp_path / "keys" / "database.json", 0o600, tmp_path)
    document = rotation.document_from_env(ENV, now=0)
    version = rotation.write_document(target, document)
    rotation.add_pending(document, "access", now=1)
    assert rotation.write_document(target, document) != version
    assert oct(target.keys_path.stat().st_mode & 0o777) == "0o600"
    copies = list(target.keys_path.parent.glob("jwt-keys.json.bak-*"))
    assert len(copies) == 1 and oct(copies[0].stat().st_mode & 0o777) == "0o600"
    assert json.loads(target.keys_path.read_text()) == document


def test_a_corrupt_key_file_is_refused(tmp_path):
    from dynoctl.errors import ConfigError

    path = tmp_path / "jwt-keys.json"
    path.write_text('{"access": {"signing": "x", "keys": []}}')
    with pytest.raises(ConfigError, match="corrupt"):
        rotation.read_document(path)


@pytest.mark.parametrize(("health", "agree"), [
    (None, False),
    ({"keyset": "v2", "workers": [{"keyset": "v2"}], "workers_expected": 2}, False),  # one still starting
    ({"keyset": "v2", "workers": [{"keyset": "v2"}, {"keyset": "v1"}], "workers_expected": 2}, False),
    ({"keyset": "v2", "workers": [{"keyset": "v2"}, {"keyset": "v2"}], "workers_expected": 2}, True),
    ({"keyset": "v2"}, True),  # a server without worker reports: itself only
])
def test_every_worker_must_agree(health, agree):
    assert rotation.workers_agree(health, "v2", None) is agree


def test_worker_count_follows_uvicorn():
    assert worker_count([], {}) == 1
    assert worker_count([], {"WEB_CONCURRENCY": "3"}) == 3
    assert worker_count(["--workers", "2"], {"WEB_CONCURRENCY": "3"}) == 2
    assert worker_count(["--workers=4"], {}) == 4


def test_revoke_all_takes_no_other_key_option(dynoctl):
    assert dynoctl("env", "init").exit_code == 0
    result = dynoctl("--runtime", "local", "rotate-secrets", "--revoke-all", "--access", "--yes")
    assert result.exit_code == 2 and "--revoke-all" in result.stderr


def test_env_check_and_status_show_secret_ages(dynoctl):
    assert dynoctl("env", "init").exit_code == 0
    result = dynoctl("--json", "env", "check")
    ages = json.loads(result.stdout)["secret_ages"]
    assert {"JWT_ACCESS_TOKEN_SECRET", "DATABASE_URL"} <= {a["name"] for a in ages}
    assert not any(a["stale"] for a in ages) and "warning" not in result.stderr
    old = dynoctl("env", "check", env={"DYNO_SECRET_MAX_AGE_DAYS": "-1"})
    assert "JWT_ACCESS_TOKEN_SECRET in server.local.env is 0 days old" in old.stderr
    status = dynoctl("--runtime", "local", "status", env={"DYNO_SECRET_MAX_AGE_DAYS": "-1"})
    assert "run 'dynoctl rotate-secrets'" in status.stderr
