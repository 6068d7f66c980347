"""Sessions (issue 8, item 8): refresh grace, reuse detection, access tokens ending with
their session, and the Origin check of cookie-authenticated refresh and logout."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .helpers import sign_up
from .test_auth import end_grace, refresh, session_id_of, session_row


def me(client, access_token):
    return client.get("/auth/me", headers={"Authorization": f"Bearer {access_token}"})


def test_parallel_refreshes_of_one_token_all_succeed(client):
    account = sign_up(client)
    token = account.tokens["refresh_token"]

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: refresh(client, token), range(10)))

    assert [answer.status_code for answer in answers] == [200] * 10
    # Every answer's tokens work: the next refresh from any tab succeeds.
    for answer in answers:
        assert me(client, answer.json()["access_token"]).status_code == 200
    assert refresh(client, answers[-1].json()["refresh_token"]).status_code == 200


def test_a_retry_of_the_previous_token_within_the_grace_succeeds(client):
    account = sign_up(client)
    first = account.tokens["refresh_token"]
    second = refresh(client, first).json()["refresh_token"]

    retried = refresh(client, first)  # e.g. the first answer was lost on the network

    assert retried.status_code == 200
    assert refresh(client, second).status_code == 200


def test_reuse_after_the_grace_ends_the_session_and_its_access_tokens(client, database_url):
    account = sign_up(client)
    first = account.tokens["refresh_token"]
    rotated = refresh(client, first).json()
    end_grace(database_url, session_id_of(client, first))

    replay = refresh(client, first)

    assert replay.status_code == 401
    assert session_row(database_url, session_id_of(client, first)).revoked_at is not None
    assert me(client, rotated["access_token"]).status_code == 401
    assert me(client, account.tokens["access_token"]).status_code == 401


def test_logout_ends_the_access_tokens_at_once(client):
    account, other = sign_up(client), sign_up(client)

    client.post("/auth/logout", json={"refresh_token": account.tokens["refresh_token"]})

    assert me(client, account.tokens["access_token"]).status_code == 401
    assert me(client, other.tokens["access_token"]).status_code == 200  # other sessions are untouched


def test_a_token_two_generations_old_is_reuse_even_within_the_grace(client):
    account = sign_up(client)
    first = account.tokens["refresh_token"]
    second = refresh(client, first).json()["refresh_token"]
    refresh(client, second)

    assert refresh(client, first).status_code == 401


def test_cookie_refresh_and_logout_check_the_origin(client, settings):
    sign_up(client)  # the client now holds the refresh cookie
    foreign = {"Origin": "http://localhost:4000"}  # same site, other origin

    assert client.post("/auth/refresh", headers=foreign).status_code == 403
    assert client.post("/auth/logout", headers=foreign).status_code == 403
    assert client.post("/auth/logout", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post("/auth/refresh", headers={"Origin": settings.frontend_url}).status_code == 200
    assert client.post("/auth/logout", headers={"Origin": settings.frontend_url}).status_code == 204


def test_a_token_in_the_body_needs_no_origin(client):
    account = sign_up(client)

    answer = client.post(
        "/auth/refresh", json={"refresh_token": account.tokens["refresh_token"]}, headers={"Origin": "http://evil.test"}
    )

    assert answer.status_code == 200
