"""Several workers under ``python -m dynoserver``: SIGHUP reaches every one of them in
place (no restart), /health shows what each has loaded, and a new database
credential is taken only once it works."""

from __future__ import annotations

import json
import secrets
import signal
import time
from urllib.parse import quote, urlsplit

import httpx
import psycopg
from psycopg import sql
import pytest

from .helpers import write_key_file
from .test_sighup import start_server, stop_server, wait_until_healthy


def wait_for(http: httpx.Client, predicate, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = http.get("/health").json()
        if predicate(health):
            return health
        time.sleep(0.05)
    pytest.fail(f"/health never satisfied the condition; last: {health}")


def test_every_worker_reloads_in_place_and_takes_only_a_working_credential(postgres, database_url, tmp_path):
    login, password = f"rot_{secrets.token_hex(3)}", "p@ss:/word#" + secrets.token_urlsafe(12)  # any character
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(login),
                                                                                  sql.Literal(password)))
    server = start_server(database_url, tmp_path, WEB_CONCURRENCY="2")
    try:
        wait_until_healthy(server)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            first = wait_for(http, lambda h: len(h["workers"]) == 2)
            assert first["workers_expected"] == 2
            pids, old_login = {w["pid"] for w in first["workers"]}, first["workers"][0]["db_login"]

            # New keys: every worker, in place.
            write_key_file(server.keys_file, {"a2": secrets.token_urlsafe(32)}, {"r2": secrets.token_urlsafe(32)},
                           signing=("a2", "r2"))
            server.process.send_signal(signal.SIGHUP)
            after = wait_for(http, lambda h: len({w["keyset"] for w in h["workers"]} - {first["keyset"]}) == 1
                             and first["keyset"] not in {w["keyset"] for w in h["workers"]})
            assert {w["pid"] for w in after["workers"]} == pids

            # A credential that does not work is refused by every worker; they keep theirs.
            credential = server.keys_file.parent / "database.json"
            parts = urlsplit(database_url)
            wrong = parts._replace(netloc=f"{login}:{quote('not-it', safe='')}@{parts.hostname}:{parts.port}").geturl()
            credential.write_text(json.dumps({"url": wrong}))
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while server.log_file.read_text().count("new database credential not usable") < 2:
                assert time.monotonic() < deadline, server.log_file.read_text()
                time.sleep(0.05)
            assert {w["db_login"] for w in http.get("/health").json()["workers"]} == {old_login}
            assert http.get("/ready").status_code == 200

            # The right one (percent-encoded, any character survives) is taken by all.
            right = parts._replace(netloc=f"{login}:{quote(password, safe='')}@{parts.hostname}:{parts.port}").geturl()
            credential.write_text(json.dumps({"url": right}))
            server.process.send_signal(signal.SIGHUP)
            moved = wait_for(http, lambda h: {w["db_login"] for w in h["workers"]} == {login})
            assert {w["pid"] for w in moved["workers"]} == pids
            assert http.get("/ready").status_code == 200
            assert password not in server.log_file.read_text()
    finally:
        stop_server(server)
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{login}'")
            conn.execute(f"DROP ROLE IF EXISTS {login}")
