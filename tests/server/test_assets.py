"""Asset upload (streamed, size-limited), download, delete, and the on-disk layout."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from dynoserver.app import create_app
from dynoserver.storage import STORAGE_PATH

from .helpers import create_project, db_engine, make_settings, sign_up

LIMIT = 64 * 1024


@pytest.fixture
def assets_dir(tmp_path):
    return tmp_path / "assets"


@pytest.fixture
def client(database_url, assets_dir):
    with TestClient(create_app(make_settings(database_url, assets_dir, max_upload_bytes=LIMIT))) as test_client:
        yield test_client


@pytest.fixture
def project_url(client, alice):
    return f"/projects/{create_project(client, alice)['id']}"


def stored_files(assets_dir):
    return sorted(p.relative_to(assets_dir).as_posix() for p in assets_dir.rglob("*") if p.is_file())


def upload(client, account, project_url, content, name="report.bin", content_type="application/pdf", data=None):
    files = {"file": (name, content, content_type)}
    return client.post(f"{project_url}/assets", files=files, data=data, headers=account.headers)


def test_upload_and_download_are_byte_identical(client, alice, project_url, assets_dir):
    content = os.urandom(LIMIT)  # exactly at the limit

    uploaded = upload(client, alice, project_url, content, name="Q3 report.pdf")
    asset = uploaded.json()
    downloaded = client.get(f"{project_url}/assets/{asset['id']}/content", headers=alice.headers)

    assert uploaded.status_code == 201
    assert asset["sha256"] == hashlib.sha256(content).hexdigest() and asset["size"] == len(content)
    assert downloaded.content == content
    assert hashlib.sha256(downloaded.content).hexdigest() == asset["sha256"]
    assert downloaded.headers["content-type"] == "application/pdf"
    assert downloaded.headers["content-disposition"].startswith("attachment;")
    assert downloaded.headers["x-content-type-options"] == "nosniff"


def test_files_follow_the_documented_layout(client, alice, project_url, assets_dir):
    asset = upload(client, alice, project_url, b"hello").json()

    files = stored_files(assets_dir)

    assert files == [f"{asset['id'][:2]}/{asset['id']}"]
    assert STORAGE_PATH.match(files[0])


@pytest.mark.parametrize(
    "size",
    [LIMIT + 1, 5 * LIMIT],
    ids=["detected-while-streaming", "refused-by-content-length"],
)
def test_oversize_upload_is_refused_and_leaves_no_file(client, alice, project_url, assets_dir, size):
    response = upload(client, alice, project_url, b"x" * size)

    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert stored_files(assets_dir) == []
    assert client.get(f"{project_url}/assets", headers=alice.headers).json() == []


def test_oversize_chunked_upload_without_length_is_refused(client, alice, project_url, assets_dir):
    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big"\r\n\r\n'
        for _ in range(4):
            yield b"x" * LIMIT
        yield b"\r\n--b--\r\n"

    response = client.post(
        f"{project_url}/assets", content=body(),
        headers={**alice.headers, "Content-Type": "multipart/form-data; boundary=b"},
    )  # fmt: skip

    assert response.status_code == 413 and response.json()["error"] == "too_large"
    assert stored_files(assets_dir) == []


def test_upload_attached_to_a_task(client, alice, project_url):
    task = client.post(f"{project_url}/tasks", json={"title": "t"}, headers=alice.headers).json()

    asset = upload(client, alice, project_url, b"data", data={"task_id": task["id"]}).json()

    assert asset["task_id"] == task["id"]


def test_upload_for_a_foreign_task_is_refused_and_leaves_no_file(client, alice, project_url, assets_dir):
    response = upload(client, alice, project_url, b"data", data={"task_id": str(uuid.uuid4())})

    assert response.status_code == 404 and response.json()["error"] == "unknown_task"
    assert stored_files(assets_dir) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"content": b"plain body", "headers": {"Content-Type": "application/octet-stream"}},
        {"data": {"note": "no file part"}, "files": {"other": ("a.txt", b"x", "text/plain")}},
        {"content": b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc",
         "headers": {"Content-Type": "multipart/form-data; boundary=b"}},
    ],
    ids=["not-multipart", "no-file-part", "truncated"],
)
def test_malformed_uploads_are_400(client, alice, project_url, assets_dir, kwargs):
    headers = {**alice.headers, **kwargs.pop("headers", {})}

    response = client.post(f"{project_url}/assets", headers=headers, **kwargs)

    assert response.status_code == 400 and response.json()["error"] == "bad_upload"
    assert stored_files(assets_dir) == []


def test_other_users_cannot_upload_or_download(client, alice, bob, project_url, assets_dir):
    asset = upload(client, alice, project_url, b"private").json()

    assert upload(client, bob, project_url, b"intruder").status_code == 404
    assert client.get(f"{project_url}/assets/{asset['id']}/content", headers=bob.headers).status_code == 404
    assert len(stored_files(assets_dir)) == 1


def test_archived_project_refuses_uploads(client, alice, project_url, assets_dir):
    client.post(f"{project_url}/archive", headers=alice.headers)

    assert upload(client, alice, project_url, b"late").status_code == 409
    assert stored_files(assets_dir) == []


def test_deleting_an_asset_or_its_project_removes_files(client, alice, assets_dir):
    project_url = f"/projects/{create_project(client, alice)['id']}"
    kept = upload(client, alice, project_url, b"one").json()
    dropped = upload(client, alice, project_url, b"two").json()

    assert client.delete(f"{project_url}/assets/{dropped['id']}", headers=alice.headers).status_code == 204
    assert stored_files(assets_dir) == [f"{kept['id'][:2]}/{kept['id']}"]
    assert client.delete(project_url, headers=alice.headers).status_code == 204
    assert stored_files(assets_dir) == []


def test_file_names_are_reduced_to_a_base_name(client, alice, project_url):
    asset = upload(client, alice, project_url, b"x", name="../../etc/passwd", content_type="<script>").json()

    assert asset["original_name"] == "passwd"
    assert asset["content_type"] == "application/octet-stream"


def test_missing_file_on_disk_is_reported_not_crashed(client, alice, project_url, assets_dir):
    asset = upload(client, alice, project_url, b"soon gone").json()
    (assets_dir / asset["id"][:2] / asset["id"]).unlink()

    response = client.get(f"{project_url}/assets/{asset['id']}/content", headers=alice.headers)

    assert response.status_code == 404 and response.json()["error"] == "asset_file_missing"


def test_a_new_account_starts_without_assets(client, project_url):
    stranger = sign_up(client)

    assert client.get(f"{project_url}/assets", headers=stranger.headers).status_code == 404


def wait_for(condition, what: str, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_cancelled_upload_never_leaves_a_row_without_its_file(client, alice, project_url, assets_dir, database_url):
    project_id = project_url.rsplit("/", 1)[1]
    engine = db_engine(database_url)
    locker = engine.connect()
    # A concurrent transaction holds the project row: the upload's row insert (FOR SHARE) waits on it.
    locker.execute(text("SELECT 1 FROM projects WHERE id = :id FOR UPDATE"), {"id": project_id})

    def insert_is_waiting() -> bool:
        with engine.connect() as connection:
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            return connection.scalar(text(query)) > 0

    async def cancel_while_inserting() -> None:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            files = {"file": ("a.txt", b"hello", "text/plain")}
            request = asyncio.create_task(http.post(f"{project_url}/assets", files=files, headers=alice.headers))
            deadline = time.monotonic() + 10
            while not await asyncio.to_thread(insert_is_waiting):
                assert not request.done() and time.monotonic() < deadline, "the upload never reached its insert"
            request.cancel()  # as a shutdown timeout or a disconnect would
            with contextlib.suppress(asyncio.CancelledError):
                await request

    try:
        asyncio.run(cancel_while_inserting())
        locker.rollback()  # the abandoned worker thread now commits the row
        with engine.connect() as connection:
            select_path = text("SELECT storage_path FROM assets WHERE project_id = :id")
            wait_for(lambda: connection.execute(select_path, {"id": project_id}).first() is not None, "the row")
            storage_path = connection.scalar(select_path, {"id": project_id})
    finally:
        locker.close()
        engine.dispose()

    assert stored_files(assets_dir) == [storage_path]


# -- issue 8: safe downloads, undeclared fields, the storage quota ---------------------------


@pytest.mark.parametrize(
    "declared", ["text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/javascript"]
)
def test_active_content_is_served_as_an_opaque_download(client, alice, project_url, declared):
    asset = upload(client, alice, project_url, b"<script>alert(document.cookie)</script>", content_type=declared)

    downloaded = client.get(f"{project_url}/assets/{asset.json()['id']}/content", headers=alice.headers)

    assert asset.json()["content_type"] == declared  # the record keeps what the uploader said
    assert downloaded.headers["content-type"] == "application/octet-stream"
    assert downloaded.headers["content-disposition"].startswith("attachment;")
    assert downloaded.headers["x-content-type-options"] == "nosniff"
    assert downloaded.headers["content-security-policy"].startswith("sandbox")


def test_passive_content_keeps_its_type(client, alice, project_url):
    asset = upload(client, alice, project_url, b"\x89PNG....", content_type="image/png").json()

    downloaded = client.get(f"{project_url}/assets/{asset['id']}/content", headers=alice.headers)

    assert downloaded.headers["content-type"] == "image/png"
    assert downloaded.headers["content-security-policy"].startswith("sandbox")


def test_undeclared_multipart_fields_are_refused(client, alice, project_url, assets_dir):
    response = upload(client, alice, project_url, b"x", data={"owner_id": "someone else"})

    assert response.status_code == 400 and response.json()["error"] == "bad_upload"
    assert "owner_id" in response.json()["message"]
    assert stored_files(assets_dir) == []


def test_storage_quota_is_per_user_across_projects(database_url, assets_dir):
    quota = 3 * 1024
    settings = make_settings(database_url, assets_dir, max_upload_bytes=LIMIT, user_storage_quota_bytes=quota)
    with TestClient(create_app(settings)) as client:
        alice, bob = sign_up(client), sign_up(client)
        first, second = (f"/projects/{create_project(client, alice, name)['id']}" for name in ("one", "two"))
        bobs = f"/projects/{create_project(client, bob)['id']}"

        assert upload(client, alice, first, b"a" * 2048).status_code == 201
        over = upload(client, alice, second, b"b" * 2048)  # crosses the quota while streaming
        exact = upload(client, alice, second, b"c" * 1024)  # fills it exactly
        full = upload(client, alice, first, b"d")  # refused before any byte is stored
        others = upload(client, bob, bobs, b"e" * 2048)

    assert over.status_code == full.status_code == 413
    assert over.json()["error"] == full.json()["error"] == "quota_exceeded"
    assert exact.status_code == 201 and others.status_code == 201
    assert len(stored_files(assets_dir)) == 3
