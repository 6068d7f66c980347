"""Register, login, refresh (rotation and reuse detection), logout, expiry."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update

from dynoserver import tokens
from dynoserver.models import Session as AuthSession

from .helpers import PASSWORD, db_engine, sign_up


def refresh(client, refresh_token):
    return client.post("/auth/refresh", json={"refresh_token": refresh_token})


def session_row(database_url, session_id):
    engine = db_engine(database_url)
    with engine.connect() as connection:
        row = connection.execute(select(AuthSession).where(AuthSession.id == session_id)).one()
    engine.dispose()
    return row


def session_id_of(client, token):
    return tokens.verify(client.app.state.keys.current, "refresh", token).session_id


def test_register_login_and_me(client):
    account = sign_up(client)

    me = client.get("/auth/me", headers=account.headers)

    assert me.status_code == 200
    assert me.json()["email"] == account.email
    assert account.tokens["token_type"] == "bearer"
    assert account.tokens["expires_in"] == 900


def test_email_is_normalised_and_unique(client):
    account = sign_up(client)

    again = client.post("/auth/register", json={"email": f"  {account.email.upper()} ", "password": PASSWORD})

    assert again.status_code == 409
    assert again.json()["error"] == "email_taken"


def test_email_length_is_checked_after_lower_casing(client):
    # 'İ'.lower() is two code points: 254 characters as sent, 255 once normalised.
    too_long = "\u0130" + "a" * 240 + "@example.test"
    just_fits = "\u0130" + "a" * 239 + "@example.test"

    refused = client.post("/auth/register", json={"email": too_long, "password": PASSWORD})
    accepted = client.post("/auth/register", json={"email": just_fits, "password": PASSWORD})

    assert len(too_long) == 254 and refused.status_code == 422
    assert refused.json()["error"] == "validation_error"
    assert accepted.status_code == 201 and len(accepted.json()["email"]) == 254


def test_login_failures_look_the_same(client):
    account = sign_up(client)

    wrong_password = client.post("/auth/login", json={"email": account.email, "password": "not the password"})
    unknown_email = client.post("/auth/login", json={"email": "nobody@example.test", "password": PASSWORD})

    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()


def test_password_is_stored_as_argon2id(client, database_url):
    account = sign_up(client)
    engine = db_engine(database_url)
    with engine.connect() as connection:
        query = "SELECT password_hash FROM users WHERE email = %s"
        stored = connection.exec_driver_sql(query, (account.email,)).scalar()
    engine.dispose()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_refresh_rotates_the_refresh_token(client, database_url):
    account = sign_up(client)

    rotated = refresh(client, account.tokens["refresh_token"])

    assert rotated.status_code == 200
    new_tokens = rotated.json()
    assert new_tokens["refresh_token"] != account.tokens["refresh_token"]
    assert client.get("/auth/me", headers={"Authorization": f"Bearer {new_tokens['access_token']}"}).status_code == 200
    row = session_row(database_url, session_id_of(client, new_tokens["refresh_token"]))
    assert row.last_used_at is not None and row.revoked_at is None


def end_grace(database_url, session_id):
    """Move the session's last rotation out of the refresh grace."""
    engine = db_engine(database_url)
    with engine.begin() as connection:
        past = datetime.now(timezone.utc) - timedelta(hours=1)
        connection.execute(update(AuthSession).where(AuthSession.id == session_id).values(rotated_at=past))
    engine.dispose()


def test_reusing_a_rotated_refresh_token_revokes_the_whole_session(client, database_url):
    account = sign_up(client)
    first = account.tokens["refresh_token"]
    second = refresh(client, first).json()["refresh_token"]
    end_grace(database_url, session_id_of(client, first))

    replay = refresh(client, first)

    assert replay.status_code == 401
    assert "revoked" in replay.json()["message"]
    # The legitimate holder's newest token dies with the family.
    assert refresh(client, second).status_code == 401
    assert session_row(database_url, session_id_of(client, second)).revoked_at is not None


def test_logout_ends_the_session(client):
    account = sign_up(client)

    logout = client.post("/auth/logout", json={"refresh_token": account.tokens["refresh_token"]})

    assert logout.status_code == 204
    assert refresh(client, account.tokens["refresh_token"]).status_code == 401


def test_refresh_token_travels_in_an_httponly_cookie(client):
    account = sign_up(client)  # the test client keeps the cookie set by login

    set_cookie = client.post("/auth/refresh").headers["set-cookie"]

    assert "dyno_refresh=" in set_cookie and "HttpOnly" in set_cookie and "Path=/auth" in set_cookie
    assert client.post("/auth/logout").status_code == 204
    assert refresh(client, account.tokens["refresh_token"]).status_code == 401


def test_expired_access_token_is_rejected(client):
    account = sign_up(client)
    claims = tokens.verify(client.app.state.keys.current, "access", account.tokens["access_token"])
    expired = tokens.issue(client.app.state.keys.current, "access", claims.user_id, claims.session_id, -60)

    response = client.get("/auth/me", headers={"Authorization": f"Bearer {expired}"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_expired_session_cannot_refresh(client, database_url):
    account = sign_up(client)
    session_id = session_id_of(client, account.tokens["refresh_token"])
    engine = db_engine(database_url)
    with engine.begin() as connection:
        past = datetime.now(timezone.utc) - timedelta(seconds=1)
        connection.execute(update(AuthSession).where(AuthSession.id == session_id).values(expires_at=past))
    engine.dispose()

    assert refresh(client, account.tokens["refresh_token"]).status_code == 401


def test_tokens_are_not_interchangeable(client):
    account = sign_up(client)

    as_refresh = refresh(client, account.tokens["access_token"])
    as_access = client.get("/auth/me", headers={"Authorization": f"Bearer {account.tokens['refresh_token']}"})
    garbage = client.get("/auth/me", headers={"Authorization": "Bearer not.a.jwt"})

    assert (as_refresh.status_code, as_access.status_code, garbage.status_code) == (401, 401, 401)


def test_token_for_unknown_session_cannot_refresh(client):
    account = sign_up(client)
    user_id = tokens.verify(client.app.state.keys.current, "access", account.tokens["access_token"]).user_id
    forged_session = tokens.issue(client.app.state.keys.current, "refresh", user_id, uuid.uuid4(), 60)

    assert refresh(client, forged_session).status_code == 401


def test_validation_errors_never_echo_the_password(client):
    secret = "Zq7#xW"  # too short, and distinctive

    response = client.post("/auth/register", json={"email": "someone@example.test", "password": secret})

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert secret not in response.text
