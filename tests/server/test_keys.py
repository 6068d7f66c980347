"""JWT key sets: sources, validation, and rotation without logging anyone out."""

from __future__ import annotations

import json
import secrets

import jwt
import pytest
from fastapi.testclient import TestClient

from dynoserver import tokens
from dynoserver.app import create_app
from dynoserver.keys import KeyConfigError, KeyStore, derive_kid, keyset_from_file, keyset_from_secrets

from .helpers import make_settings, sign_up, write_key_file


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def test_env_kids_are_stable_and_reveal_nothing():
    secret = new_secret()

    keyset = keyset_from_secrets(secret, new_secret())

    assert keyset.access.signing.kid == derive_kid("access", secret) == derive_kid("access", secret)
    assert derive_kid("refresh", secret) != derive_kid("access", secret)
    assert secret not in keyset.access.signing.kid and secret not in keyset.version
    assert secret not in repr(keyset)


def test_short_env_secret_is_refused_by_name():
    with pytest.raises(KeyConfigError, match="JWT_REFRESH_TOKEN_SECRET must be at least 32 bytes"):
        keyset_from_secrets(new_secret(), "short")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid UTF-8 JSON at line 1"),
        ("[]", "must hold a JSON object"),
        ('{"access": {"signing": "a", "keys": []}}', "'signing' must name one of the listed kids"),
        ('{"access": {"signing": "a", "keys": [{"kid": "a", "secret": "tiny-secret"}]}}', "shorter than 32 bytes"),
    ],
)
def test_invalid_key_files_are_refused_without_quoting_secrets(tmp_path, content, message):
    path = tmp_path / "keys.json"
    path.write_text(content)

    with pytest.raises(KeyConfigError, match=message) as caught:
        keyset_from_file(path)

    assert "tiny-secret" not in str(caught.value)


def test_key_file_wins_over_env_secrets_once_it_exists(tmp_path):
    path = tmp_path / "keys.json"
    store = KeyStore(path, new_secret(), new_secret())
    env_version = store.current.version
    write_key_file(path, {"a1": new_secret()}, {"r1": new_secret()}, signing=("a1", "r1"))

    reloaded = store.reload()

    assert reloaded.access.signing.kid == "a1" and reloaded.version != env_version


def test_failed_reload_keeps_the_running_key_set(tmp_path):
    path = tmp_path / "keys.json"
    write_key_file(path, {"a1": new_secret()}, {"r1": new_secret()}, signing=("a1", "r1"))
    store = KeyStore(path, None, None)
    before = store.current
    path.write_text("{broken")

    with pytest.raises(KeyConfigError):
        store.reload()

    assert store.current is before


def test_reload_with_the_key_file_gone_keeps_the_file_keys_not_the_env_secrets(tmp_path):
    path = tmp_path / "keys.json"
    write_key_file(path, {"a1": new_secret()}, {"r1": new_secret()}, signing=("a1", "r1"))
    store = KeyStore(path, new_secret(), new_secret())  # env secrets retired by the rotation
    before = store.current
    path.unlink()

    with pytest.raises(KeyConfigError, match="cannot read key file"):
        store.reload()

    assert store.current is before and store.current.access.signing.kid == "a1"


@pytest.mark.parametrize("signing", [["a1"], {"kid": "a1"}, 1])
def test_non_string_signing_kid_is_a_key_config_error(tmp_path, signing):
    path = tmp_path / "keys.json"
    key = {"kid": "a1", "secret": new_secret()}
    path.write_text(json.dumps({purpose: {"signing": signing, "keys": [key]} for purpose in ("access", "refresh")}))

    with pytest.raises(KeyConfigError, match="'signing' must name one of the listed kids"):
        KeyStore(path, None, None)


def test_rotation_add_promote_retire_keeps_users_logged_in(database_url, tmp_path):
    keys_file = tmp_path / "keys.json"
    old_access, old_refresh, new_access, new_refresh = (new_secret() for _ in range(4))
    write_key_file(keys_file, {"a-old": old_access}, {"r-old": old_refresh}, signing=("a-old", "r-old"))
    settings = make_settings(database_url, tmp_path / "assets", jwt_keys_file=keys_file)
    with TestClient(create_app(settings)) as client:
        store = client.app.state.keys
        account = sign_up(client)
        versions = [client.get("/health").json()["keyset"]]

        # Add and promote the new keys while the old ones stay loaded for verification.
        write_key_file(
            keys_file,
            {"a-old": old_access, "a-new": new_access},
            {"r-old": old_refresh, "r-new": new_refresh},
            signing=("a-new", "r-new"),
        )
        store.reload()
        versions.append(client.get("/health").json()["keyset"])
        assert client.get("/auth/me", headers=account.headers).status_code == 200  # old-key token still verifies
        rotated = client.post("/auth/refresh", json={"refresh_token": account.tokens["refresh_token"]}).json()
        assert (kid_of(rotated["access_token"]), kid_of(rotated["refresh_token"])) == ("a-new", "r-new")

        # Retire the old keys: tokens they signed stop verifying, new ones keep working.
        write_key_file(keys_file, {"a-new": new_access}, {"r-new": new_refresh}, signing=("a-new", "r-new"))
        store.reload()
        versions.append(client.get("/health").json()["keyset"])
        assert client.get("/auth/me", headers=account.headers).status_code == 401
        assert client.get("/auth/me", headers={"Authorization": f"Bearer {rotated['access_token']}"}).status_code == 200

    assert len(set(versions)) == 3


def test_moving_env_secrets_into_a_key_file_keeps_tokens_valid(database_url, tmp_path):
    keys_file = tmp_path / "keys.json"
    settings = make_settings(database_url, tmp_path / "assets", jwt_keys_file=keys_file)
    with TestClient(create_app(settings)) as client:
        account = sign_up(client)
        access_kid = derive_kid("access", settings.access_token_secret)
        refresh_kid = derive_kid("refresh", settings.refresh_token_secret)
        write_key_file(
            keys_file,
            {access_kid: settings.access_token_secret, "a2": new_secret()},
            {refresh_kid: settings.refresh_token_secret, "r2": new_secret()},
            signing=("a2", "r2"),
        )

        client.app.state.keys.reload()

        assert client.get("/auth/me", headers=account.headers).status_code == 200
        refreshed = client.post("/auth/refresh", json={"refresh_token": account.tokens["refresh_token"]})
        assert refreshed.status_code == 200
        assert tokens.verify(client.app.state.keys.current, "access", refreshed.json()["access_token"])
