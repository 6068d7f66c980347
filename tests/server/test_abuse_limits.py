"""Abuse limits (issue 8, items 4 and 5): login/register throttling shared through the
database, the password-hashing pool shedding load, cheap 422s for huge bodies."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from fastapi.testclient import TestClient

from dynoserver.app import create_app
from dynoserver.limits import MAX_JSON_ITEMS
from dynoserver.passwords import Overloaded, Passwords

from .helpers import PASSWORD, make_settings, sign_up


def client_at(settings, address: str) -> TestClient:
    return TestClient(create_app(settings), client=(address, 50000))


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.test"


def test_wrong_passwords_against_one_account_are_throttled(database_url, tmp_path):
    settings = make_settings(database_url, tmp_path, auth_account_failures=3)
    with client_at(settings, "192.0.2.1") as client:
        account = sign_up(client)
        wrong = {"email": account.email, "password": "not the password"}
        answers = [client.post("/auth/login", json=wrong) for _ in range(4)]
        right = client.post("/auth/login", json={"email": account.email, "password": PASSWORD})
    # Another address, another process: the account stays blocked (the count is in the database).
    with client_at(settings, "192.0.2.2") as elsewhere:
        from_elsewhere = elsewhere.post("/auth/login", json={"email": account.email, "password": PASSWORD})
        other_account = sign_up(elsewhere)

    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert right.status_code == from_elsewhere.status_code == 429
    assert right.json()["error"] == "too_many_attempts"
    assert 1 <= int(right.headers["retry-after"]) <= settings.auth_window_seconds
    assert other_account.tokens["access_token"]


def test_a_successful_login_clears_earlier_failures(database_url, tmp_path):
    settings = make_settings(database_url, tmp_path, auth_account_failures=3)
    with client_at(settings, "192.0.2.3") as client:
        account = sign_up(client)
        wrong = {"email": account.email, "password": "not the password"}
        for _ in range(2):
            client.post("/auth/login", json=wrong)
        assert client.post("/auth/login", json={"email": account.email, "password": PASSWORD}).status_code == 200
        answers = [client.post("/auth/login", json=wrong).status_code for _ in range(3)]

    assert answers == [401, 401, 401]


def test_one_client_address_is_throttled_across_accounts(database_url, tmp_path):
    settings = make_settings(database_url, tmp_path, auth_address_attempts=5)
    with client_at(settings, "192.0.2.4") as client:
        registers = [client.post("/auth/register", json={"email": new_email(), "password": PASSWORD}) for _ in range(3)]
        logins = [client.post("/auth/login", json={"email": new_email(), "password": PASSWORD}) for _ in range(3)]
    with client_at(settings, "192.0.2.5") as other:
        other_address = other.post("/auth/register", json={"email": new_email(), "password": PASSWORD})

    assert [a.status_code for a in registers + logins] == [201, 201, 201, 401, 401, 429]
    assert "retry-after" in logins[-1].headers
    assert other_address.status_code == 201


def test_probing_registered_emails_counts_against_the_account(database_url, tmp_path):
    settings = make_settings(database_url, tmp_path, auth_account_failures=2)
    with client_at(settings, "192.0.2.6") as client:
        account = sign_up(client)
        taken = {"email": account.email, "password": PASSWORD}
        answers = [client.post("/auth/register", json=taken).status_code for _ in range(3)]

    assert answers == [409, 409, 429]


def test_the_hashing_pool_sheds_load_instead_of_queueing(database_url, tmp_path):
    settings = make_settings(
        database_url, tmp_path, password_hash_workers=1, password_hash_queue=1,
        argon2_time_cost=3, argon2_memory_kib=8192,
    )  # fmt: skip
    passwords = Passwords(settings)

    async def flood() -> list[object]:
        return await asyncio.gather(*(passwords.hash(PASSWORD) for _ in range(5)), return_exceptions=True)

    try:
        results = asyncio.run(flood())
    finally:
        passwords.close()

    assert sum(isinstance(r, Overloaded) for r in results) == 3
    assert sum(isinstance(r, str) and r.startswith("$argon2id$") for r in results) == 2
    assert not passwords.saturated  # every slot was given back


def test_login_answers_503_when_the_pool_is_full(database_url, tmp_path):
    settings = make_settings(database_url, tmp_path)
    with TestClient(create_app(settings)) as client:
        account = sign_up(client)
        client.app.state.passwords._admitted = 10**6  # every slot taken, as under a flood
        busy = client.post("/auth/login", json={"email": account.email, "password": PASSWORD})
        client.app.state.passwords._admitted = 0

    assert busy.status_code == 503 and busy.json()["error"] == "busy"
    assert busy.headers["retry-after"] == "1"


def test_a_body_with_many_unknown_keys_gets_a_small_422(client, alice):
    body = {"name": "x", **{f"k{i}": i for i in range(15_000)}}  # ~200 KB, within the JSON body limit

    answer = client.post("/projects", content=json.dumps(body), headers={**alice.headers, "Content-Type": "application/json"})

    assert answer.status_code == 422
    assert len(answer.content) < 4096
    assert answer.json()["details_total"] > MAX_JSON_ITEMS


def test_the_422_list_is_capped(client, alice):
    body = {"name": "x", **{f"k{i}": i for i in range(500)}}  # under the item limit: validated by the model

    answer = client.post("/projects", json=body, headers=alice.headers)

    assert answer.status_code == 422
    assert len(answer.json()["details"]) == 20 and answer.json()["details_total"] == 500


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"name": "x", ' + b" " * 20_000])
def test_large_malformed_json_is_a_422(client, alice, raw):
    answer = client.post("/projects", content=raw, headers={**alice.headers, "Content-Type": "application/json"})

    assert answer.status_code == 422 and answer.json()["error"] == "validation_error"


def test_a_large_valid_body_is_still_accepted(client, alice):
    description = "lorem ipsum " * 1600  # ~19 KB: parsed in a worker thread

    answer = client.post("/projects", json={"name": "big", "description": description}, headers=alice.headers)

    assert answer.status_code == 201 and answer.json()["description"] == description.strip()


def test_the_largest_valid_body_fits_the_json_limit(client, alice):
    project = client.post("/projects", json={"name": "p"}, headers=alice.headers).json()
    astral = "\U0001f600"  # escaped by json.dumps as a surrogate pair: 12 bytes a character
    body = {"title": astral * 300, "description": astral * 20_000, "status": "in_progress",
            "assignee_id": None, "due_date": "2026-12-31"}  # fmt: skip

    answer = client.post(f"/projects/{project['id']}/tasks", json=body, headers=alice.headers)

    assert answer.status_code == 201, answer.text[:200]


def test_the_issue_s_huge_body_is_refused_by_its_length(client, alice):
    body = json.dumps({"name": "x", **{f"unknown_key_{i:05d}": 1 for i in range(60_000)}})

    answer = client.post("/projects", content=body, headers={**alice.headers, "Content-Type": "application/json"})

    assert answer.status_code == 413 and len(answer.content) < 1024
