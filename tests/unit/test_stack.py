"""dynoctl.stack with a fake runtime (real PostgreSQL for the migrations it runs)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dynoctl import stack
from dynoctl.errors import Refused, Unreachable
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

    def __init__(self, db_url: str, api_url: str, running: set[str] = frozenset(), refuse: str | None = None,
                 interrupt_in: str | None = None, log_lines: dict | None = None):
        self.db_url, self._api_url = db_url, api_url
        self.running = set(running)
        self.calls: list[tuple[str, str]] = []
        self.refuse, self.interrupt_in = refuse, interrupt_in
        self.log_lines = log_lines or {}
        self.warnings = []

    def check(self, services):
        self.calls.append(("check", ",".join(services)))
        if self.refuse:
            raise Refused(self.refuse)

    def start(self, service, *, build=False, timeout=60):
        self.calls.append(("start", service))
        if service == self.interrupt_in:  # Ctrl-C half-way: the service was launched
            self.running.add(service)
            raise KeyboardInterrupt
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
        return iter(self.log_lines.get(service, ["boom: the last words of the server"]))

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
    assert runtime.calls == [("check", "db,server"), ("start", "db"), ("start", "server")]
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
    assert [r.revision for r in result.pending] == ["0001", "0002"]  # in the result, so in --json too


def test_refused_up_and_restart_change_nothing(db_url):
    runtime = FakeRuntime(db_url, "http://127.0.0.1:9", running={"db", "server"}, refuse="bad env file")
    with pytest.raises(Refused):
        stack.restart(runtime, ["db", "server"], timeout=5)
    with pytest.raises(Refused):
        stack.up(runtime, MIGRATIONS, timeout=5)
    assert [c for c in runtime.calls if c[0] != "check"] == []
    assert runtime.running == {"db", "server"}


@pytest.mark.parametrize("where", ["db", "server"])
def test_interrupted_up_stops_what_it_was_starting(db_url, where):
    runtime = FakeRuntime(db_url, FakeServer(200).url, interrupt_in=where)
    with pytest.raises(KeyboardInterrupt):
        stack.up(runtime, MIGRATIONS, timeout=10)
    assert runtime.running == set()  # including the service caught half-way


def test_restart_waits_until_ready_and_fails_when_not(db_url):
    runtime = FakeRuntime(db_url, FakeServer(503).url, running={"db", "server"})
    with pytest.raises(Unreachable):
        stack.restart(runtime, ["server"], timeout=1)


def test_logs_of_all_services_interleave_by_time():
    runtime = FakeRuntime("", "", log_lines={
        "db": ["2026-11-30 10:00:01.000 UTC [1] LOG:  one", "2026-11-30 10:00:03.500 UTC [1] LOG:  three"],
        "server": ['{"ts": "2026-11-30T10:00:02.000+00:00", "msg": "two"}', "  a traceback line",
                   "[supervisor 2026-11-30T10:00:04Z] four"]})
    lines = [r["line"] for r in stack.interleaved_logs(runtime, ["db", "server"], tail=None)]
    assert [line.split()[-1].strip('"}') for line in lines] == ["one", "two", "line", "three", "four"]


def test_down_plans_and_stops_in_reverse_order(db_url):
    runtime = FakeRuntime(db_url, "http://127.0.0.1:9", running={"db", "server"})
    plan = stack.plan_down(runtime, remove_data=True)
    assert plan.running == ["db", "server"] and plan.data_to_remove == ["/fake/volume"]
    result = stack.down(runtime, remove_data=True)
    assert result.stopped == ["server", "db"] and result.data_removed == ["/fake/volume"]
    assert stack.down(runtime).stopped == []
