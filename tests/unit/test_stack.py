"""dynoctl.stack with a fake runtime (real PostgreSQL for the migrations it runs)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dynoctl import stack
from dynoctl.errors import Unreachable
from dynoctl.runtime.base import SERVICES, ServiceStatus

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class FakeServer:
    """Answers /ready with a chosen status on 127.0.0.1."""

    def __init__(self, status: int):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(owner.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.status = status
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


class FakeRuntime:
    name = "fake"

    def __init__(self, db_url: str, api_url: str, running: set[str] = frozenset()):
        self.db_url, self._api_url = db_url, api_url
        self.running = set(running)
        self.calls: list[tuple[str, str]] = []

    def start(self, service, *, build=False, timeout=60):
        self.calls.append(("start", service))
        if service in self.running:
            return False
        self.running.add(service)
        return True

    def stop(self, service, *, timeout=30):
        self.calls.append(("stop", service))
        was = service in self.running
        self.running.discard(service)
        return was

    def status(self):
        return [ServiceStatus(s, "running" if s in self.running else "stopped", None, None, None) for s in SERVICES]

    def logs(self, service, *, tail=None, follow=False):
        return iter(["boom: the last words of the server"])

    def database_url(self, dbname=None):
        return self.db_url

    def api_url(self):
        return self._api_url

    def data_locations(self):
        return ["/fake/volume"]

    def remove_data(self):
        return ["/fake/volume"]


@pytest.fixture
def db_url(postgres, request):
    return postgres.create_database(f"stack_{request.node.name[:40].lower()}")


def test_up_starts_in_order_migrates_and_reports(db_url):
    server = FakeServer(200)
    runtime = FakeRuntime(db_url, server.url)
    result = stack.up(runtime, MIGRATIONS, timeout=10)
    assert runtime.calls == [("start", "db"), ("start", "server")]
    assert result.started == ["db", "server"]
    assert [r.revision for r in result.migrations.revisions] == ["0001", "0002"]
    assert result.urls["api"] == server.url

    again = stack.up(runtime, MIGRATIONS, timeout=10)
    assert again.started == [] and again.migrations.revisions == []


def test_failed_up_stops_only_what_it_started_and_carries_the_log(db_url):
    server = FakeServer(503)
    runtime = FakeRuntime(db_url, server.url, running={"db"})
    with pytest.raises(Unreachable) as failure:
        stack.up(runtime, MIGRATIONS, timeout=1)
    assert "did not become ready" in failure.value.message
    assert failure.value.details == ["boom: the last words of the server"]
    assert runtime.calls[-1] == ("stop", "server")
    assert runtime.running == {"db"}  # it was running before: left alone


def test_no_migrate_warns_about_pending_and_waits_for_any_answer(db_url):
    server = FakeServer(503)  # unready because of the schema: enough without migrations
    result = stack.up(FakeRuntime(db_url, server.url), MIGRATIONS, migrate=False, timeout=10)
    assert result.migrations is None
    assert "2 migration(s) pending" in result.warnings[0]


def test_down_plans_and_stops_in_reverse_order(db_url):
    runtime = FakeRuntime(db_url, "http://127.0.0.1:9", running={"db", "server"})
    plan = stack.plan_down(runtime, remove_data=True)
    assert plan.running == ["db", "server"] and plan.data_to_remove == ["/fake/volume"]
    result = stack.down(runtime, remove_data=True)
    assert result.stopped == ["server", "db"] and result.data_removed == ["/fake/volume"]
    assert stack.down(runtime).stopped == []
