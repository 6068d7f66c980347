"""Projects and tasks: CRUD, archive, isolation between users, input validation."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete

from dynoserver.models import User

from .helpers import create_project, db_engine, sign_up


def test_project_crud(client, alice):
    project = create_project(client, alice, "Website")
    url = f"/projects/{project['id']}"

    renamed = client.patch(url, json={"name": "Website v2", "description": "relaunch"}, headers=alice.headers)
    listed = client.get("/projects", headers=alice.headers)
    deleted = client.delete(url, headers=alice.headers)

    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Website v2" and renamed.json()["updated_at"] is not None
    assert [p["id"] for p in listed.json()] == [project["id"]]
    assert deleted.status_code == 204
    assert client.get(url, headers=alice.headers).status_code == 404


def test_users_see_only_their_own_projects(client, alice, bob):
    project = create_project(client, alice)
    base = f"/projects/{project['id']}"

    attempts = [
        client.get(base, headers=bob.headers),
        client.patch(base, json={"name": "mine now"}, headers=bob.headers),
        client.post(f"{base}/archive", headers=bob.headers),
        client.get(f"{base}/tasks", headers=bob.headers),
        client.post(f"{base}/tasks", json={"title": "sneaky"}, headers=bob.headers),
        client.get(f"{base}/assets", headers=bob.headers),
        client.delete(base, headers=bob.headers),
    ]

    assert [r.status_code for r in attempts] == [404] * len(attempts)
    assert client.get("/projects", headers=bob.headers).json() == []
    assert client.get(base, headers=alice.headers).json()["name"] == project["name"]


def test_archive_and_unarchive(client, alice):
    active = create_project(client, alice, "active")
    archived = create_project(client, alice, "old")
    base = f"/projects/{archived['id']}"

    archive = client.post(f"{base}/archive", headers=alice.headers)

    assert archive.status_code == 200 and archive.json()["archived_at"] is not None
    assert [p["id"] for p in client.get("/projects", headers=alice.headers).json()] == [active["id"]]
    archived_list = client.get("/projects", params={"archived": True}, headers=alice.headers).json()
    assert [p["id"] for p in archived_list] == [archived["id"]]
    # Archived projects are read-only.
    assert client.patch(base, json={"name": "x"}, headers=alice.headers).status_code == 409
    assert client.post(f"{base}/tasks", json={"title": "x"}, headers=alice.headers).status_code == 409
    assert client.get(base, headers=alice.headers).status_code == 200

    unarchive = client.post(f"{base}/unarchive", headers=alice.headers)

    assert unarchive.status_code == 200 and unarchive.json()["archived_at"] is None
    assert client.patch(base, json={"name": "revived"}, headers=alice.headers).status_code == 200


def test_task_crud_and_filters(client, alice, bob):
    project = create_project(client, alice)
    base = f"/projects/{project['id']}/tasks"
    bob_id = client.get("/auth/me", headers=bob.headers).json()["id"]

    created = client.post(
        base, json={"title": "Write spec", "assignee_id": bob_id, "due_date": "2030-01-31"}, headers=alice.headers
    )
    task_url = f"{base}/{created.json()['id']}"
    done = client.patch(task_url, json={"status": "done", "assignee_id": None}, headers=alice.headers)

    assert created.status_code == 201 and created.json()["status"] == "todo"
    assert done.json()["status"] == "done" and done.json()["assignee_id"] is None
    assert len(client.get(base, params={"status": "done"}, headers=alice.headers).json()) == 1
    assert client.get(base, params={"status": "todo"}, headers=alice.headers).json() == []
    assert client.delete(task_url, headers=alice.headers).status_code == 204
    assert client.get(task_url, headers=alice.headers).status_code == 404


def test_unknown_assignee_is_rejected(client, alice):
    project = create_project(client, alice)

    response = client.post(
        f"/projects/{project['id']}/tasks", json={"title": "t", "assignee_id": str(uuid.uuid4())}, headers=alice.headers
    )

    assert response.status_code == 404 and response.json()["error"] == "unknown_assignee"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/projects/not-a-uuid", None),
        ("get", "/projects?limit=0", None),
        ("get", "/projects?offset=99999999999999999999999", None),
        ("post", "/projects", {"name": ""}),
        ("post", "/projects", {"name": "x" * 201}),
        ("post", "/projects", {"name": "nul\x00byte"}),
        ("post", "/projects", {"name": "ok", "owner_id": "someone-else"}),
        ("post", "/projects", "not json"),
        ("post", "/projects", None),
    ],
)
def test_bad_input_is_a_json_4xx(client, alice, method, path, body):
    kwargs = {"content": body} if isinstance(body, str) else {"json": body}

    response = client.request(method, path, headers=alice.headers, **kwargs)

    assert 400 <= response.status_code < 500
    assert response.json()["error"]


def test_bad_task_input_is_a_json_4xx(client, alice):
    base = f"/projects/{create_project(client, alice)['id']}/tasks"
    task = client.post(base, json={"title": "t"}, headers=alice.headers).json()

    responses = [
        client.post(base, json={"title": "t", "status": "someday"}, headers=alice.headers),
        client.post(base, json={"title": "t", "due_date": "31/01/2030"}, headers=alice.headers),
        client.patch(f"{base}/{task['id']}", json={"title": None}, headers=alice.headers),
        client.get(f"{base}/{uuid.uuid4()}", headers=alice.headers),
    ]

    assert [r.status_code for r in responses] == [422, 422, 422, 404]


def test_oversize_json_bodies_are_413_json(client, alice):
    def chunked():
        yield b'{"name": "x", "description": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}'

    declared = client.post("/projects", json={"name": "x", "description": "y" * 2_000_000}, headers=alice.headers)
    json_headers = {**alice.headers, "Content-Type": "application/json"}
    undeclared = client.post("/projects", content=chunked(), headers=json_headers)

    for response in (declared, undeclared):
        assert response.status_code == 413 and response.json()["error"] == "too_large"


def test_multipart_label_does_not_lift_the_json_body_limit(client, alice):
    project_url = f"/projects/{create_project(client, alice)['id']}"
    two_mib = b"x" * (2 * 1024 * 1024)
    multipart = {**alice.headers, "Content-Type": "multipart/form-data; boundary=b"}

    def chunked():
        yield two_mib

    declared = client.post("/projects", content=two_mib, headers=multipart)
    undeclared = client.post("/auth/login", content=chunked(), headers=multipart)
    upload = client.post(f"{project_url}/assets", files={"file": ("big.bin", two_mib)}, headers=alice.headers)

    for response in (declared, undeclared):
        assert response.status_code == 413 and response.json()["error"] == "too_large"
    assert upload.status_code == 201  # the upload route keeps its own, larger limit


def test_requests_without_a_token_are_401_json(client):
    response = client.get("/projects")

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_access_token_of_a_deleted_user_is_401_not_500(client, alice, database_url):
    engine = db_engine(database_url)
    with engine.begin() as connection:  # as after a purge, or a restore that predates the user
        connection.execute(delete(User).where(User.email == alice.email))
    engine.dispose()

    response = client.post("/projects", json={"name": "orphan"}, headers=alice.headers)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"  # its sessions went with it


def test_unknown_route_is_json(client):
    response = client.get("/nope")

    assert response.status_code == 404 and response.json() == {"error": "not_found", "message": "Not Found"}


def test_listing_pages(client):
    account = sign_up(client)
    for index in range(3):
        create_project(client, account, f"p{index}")

    first_page = client.get("/projects", params={"limit": 2}, headers=account.headers).json()
    second_page = client.get("/projects", params={"limit": 2, "offset": 2}, headers=account.headers).json()

    # Newest first.
    assert [p["name"] for p in first_page + second_page] == ["p2", "p1", "p0"]
