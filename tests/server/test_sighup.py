"""SIGHUP on a live uvicorn process reloads the key file without dropping requests."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from .helpers import PASSWORD, write_key_file

ENV_CONTRACT = (
    "PORT", "DATABASE_URL", "JWT_ACCESS_TOKEN_SECRET", "JWT_REFRESH_TOKEN_SECRET", "JWT_KEYS_FILE",
    "FRONTEND_URL", "STATUS", "ASSETS_DIR", "ACCESS_TOKEN_TTL_SECONDS", "REFRESH_TOKEN_TTL_SECONDS",
    "MAX_UPLOAD_BYTES", "ARGON2_TIME_COST", "ARGON2_MEMORY_KIB", "ARGON2_PARALLELISM",
    "PASSWORD_HASH_WORKERS", "PASSWORD_HASH_QUEUE", "AUTH_WINDOW_SECONDS", "AUTH_ACCOUNT_FAILURES",
    "AUTH_ADDRESS_ATTEMPTS", "AUTH_REFUSAL_DELAY_MS", "REFRESH_GRACE_SECONDS", "USER_STORAGE_QUOTA_BYTES",
)  # fmt: skip


REPO = Path(__file__).resolve().parents[2]  # the cwd of the servers, so tests.server.* imports


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    keys_file: Path
    log_file: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(server: LiveServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"server exited early:\n{server.log_file.read_text()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server did not become healthy:\n{server.log_file.read_text()}")


def start_server(database_url: str, tmp_path: Path, factory: str | None = None, **extra_env: str) -> LiveServer:
    """The server in a subprocess, configured by the env contract with a key file:
    launched as both runtimes launch it (``python -m dynoserver``), or as uvicorn
    with another app factory."""
    keys_file = tmp_path / "keys.json"
    first_keys = {"a1": secrets.token_urlsafe(32)}, {"r1": secrets.token_urlsafe(32)}
    write_key_file(keys_file, *first_keys, signing=("a1", "r1"))
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name not in ENV_CONTRACT}
    env.update(
        DATABASE_URL=database_url, JWT_KEYS_FILE=str(keys_file), STATUS="production",
        ASSETS_DIR=str(tmp_path / "assets"), ARGON2_TIME_COST="1", ARGON2_MEMORY_KIB="8", ARGON2_PARALLELISM="1",
        **extra_env,
    )  # fmt: skip
    log_file = tmp_path / "server.log"
    with open(log_file, "wb") as log:
        launcher = ["dynoserver"] if factory is None else ["uvicorn", factory, "--factory"]
        process = subprocess.Popen(
            [sys.executable, "-m", *launcher, "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
    return LiveServer(f"http://127.0.0.1:{port}", process, keys_file, log_file)


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def live_server(database_url, tmp_path) -> Iterator[LiveServer]:
    server = start_server(database_url, tmp_path)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        stop_server(server)


def paused_multipart_body(started: threading.Event, resume: threading.Event, boundary: str) -> Iterator[bytes]:
    """A multipart upload that stalls mid-body until ``resume`` is set."""
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + b"first half "
    started.set()
    resume.wait(timeout=20)
    yield b"second half" + f"\r\n--{boundary}--\r\n".encode()


def log_in(http: httpx.Client) -> dict:
    email = f"sighup-{secrets.token_hex(4)}@example.test"
    http.post("/auth/register", json={"email": email, "password": PASSWORD}).raise_for_status()
    return http.post("/auth/login", json={"email": email, "password": PASSWORD}).raise_for_status().json()


def wait_for_new_keyset(http: httpx.Client, old: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = http.get("/health").json()["keyset"]
        if current != old:
            return current
        time.sleep(0.05)
    pytest.fail("the key set version did not change after SIGHUP")


def test_sighup_reloads_keys_while_a_request_is_in_flight(live_server):
    old_keys = json.loads(live_server.keys_file.read_text())
    with httpx.Client(base_url=live_server.url, timeout=10) as http:
        tokens = log_in(http)
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        project = http.post("/projects", json={"name": "live"}, headers=auth).raise_for_status().json()
        keyset_before = http.get("/health").json()["keyset"]

        started, resume, outcome = threading.Event(), threading.Event(), {}
        boundary = secrets.token_hex(8)

        def upload() -> None:
            outcome["response"] = httpx.post(
                f"{live_server.url}/projects/{project['id']}/assets",
                content=paused_multipart_body(started, resume, boundary),
                headers={**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"},
                timeout=30,
            )

        uploader = threading.Thread(target=upload)
        uploader.start()
        assert started.wait(timeout=10)

        # Promote a new access key; keep the old one for verification.
        old_access = old_keys["access"]["keys"][0]["secret"]
        old_refresh = old_keys["refresh"]["keys"][0]["secret"]
        write_key_file(
            live_server.keys_file,
            {"a1": old_access, "a2": secrets.token_urlsafe(32)},
            {"r1": old_refresh},
            signing=("a2", "r1"),
        )
        os.kill(live_server.process.pid, signal.SIGHUP)
        keyset_after = wait_for_new_keyset(http, keyset_before)
        resume.set()
        uploader.join(timeout=30)

        assert outcome["response"].status_code == 201, outcome["response"].text
        assert outcome["response"].json()["size"] == len(b"first half second half")
        assert live_server.process.poll() is None
        assert http.get("/auth/me", headers=auth).status_code == 200  # signed by a1, still verifies
        assert jwt.get_unverified_header(log_in(http)["access_token"])["kid"] == "a2"
        assert keyset_after != keyset_before

    log_text = live_server.log_file.read_text()
    assert "SIGHUP: key set reloaded" in log_text
    assert old_access not in log_text and old_refresh not in log_text


def test_sighup_during_start_up_is_not_fatal_and_reloads_once_started(database_url, tmp_path):
    hold = tmp_path / "startup.hold"
    hold.touch()
    server = start_server(database_url, tmp_path, "tests.server.startup_hold:create_app",
                          DYNO_TEST_STARTUP_HOLD=str(hold))  # fmt: skip
    try:
        created = hold.with_name(hold.name + ".created")
        deadline = time.monotonic() + 30
        while not created.exists() and server.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert created.exists(), server.log_file.read_text()
        # The app exists, its lifespan has not run: rotate the keys and signal now.
        write_key_file(server.keys_file, {"a2": secrets.token_urlsafe(32)}, {"r2": secrets.token_urlsafe(32)},
                       signing=("a2", "r2"))  # fmt: skip
        os.kill(server.process.pid, signal.SIGHUP)
        hold.unlink()

        wait_until_healthy(server)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert jwt.get_unverified_header(log_in(http)["access_token"])["kid"] == "a2"
        assert server.process.poll() is None
    finally:
        stop_server(server)
    assert "SIGHUP: key set reloaded" in server.log_file.read_text()


def test_sighup_while_the_process_is_still_importing_is_harmless(database_url, tmp_path):
    """python -m dynoserver ignores SIGHUP from its first line: a rotation's signal that
    lands during the imports (long before create_app) must not end the process."""
    server = start_server(database_url, tmp_path)
    try:
        time.sleep(0.3)  # the interpreter is up, the server's imports are not done
        assert server.process.poll() is None
        os.kill(server.process.pid, signal.SIGHUP)
        wait_until_healthy(server)
        assert server.process.poll() is None
    finally:
        stop_server(server)
