"""Bringing the stack up and down, in order, on any runtime.

up: db -> (migrations) -> server -> wait for /ready. Each step is idempotent, so a
second ``up`` changes nothing. The server is only judged ready by its own /ready
(database reachable and schema at head).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dynoctl import migrations
from dynoctl.db import address
from dynoctl.errors import DynoctlError, Unreachable
from dynoctl.runtime.base import SERVICES, Runtime, ServiceStatus
from dynoctl.runtime.health import probe_server

LOG_LINES_ON_FAILURE = 20
Progress = Callable[[str], None]


@dataclass(frozen=True)
class UpResult:
    runtime: str
    started: list[str]
    already_running: list[str]
    migrations: migrations.MigrationResult | None
    urls: dict[str, str]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DownPlan:
    runtime: str
    running: list[str]
    data_to_remove: list[str]  # empty unless --volumes


@dataclass(frozen=True)
class DownResult:
    runtime: str
    stopped: list[str]
    already_stopped: list[str]
    data_removed: list[str]


@dataclass(frozen=True)
class StackStatus:
    runtime: str
    services: list[ServiceStatus]
    schema: migrations.MigrationStatus | None
    schema_error: str | None = None


def up(runtime: Runtime, migrations_dir: Path, *, build: bool = False, migrate: bool = True,
       timeout: float = 120, progress: Progress = lambda _: None) -> UpResult:
    """Start what is not running; on failure, stop again what this call started, so a
    failed ``up`` leaves the stack as it found it (logs stay for the post-mortem)."""
    deadline = time.monotonic() + timeout
    started: list[str] = []
    try:
        return _up(runtime, migrations_dir, build, migrate, deadline, progress, started)
    except BaseException:
        for service in reversed(started):
            try:
                runtime.stop(service)
            except DynoctlError:
                pass  # the original error is the one to report
        raise


def _up(runtime, migrations_dir, build, migrate, deadline, progress, started) -> UpResult:
    warnings = []
    progress("starting the database")
    if runtime.start("db", build=build, timeout=_left(deadline)):
        started.append("db")
    applied = None
    url = runtime.database_url()
    if migrate:
        progress("applying migrations")
        applied = migrations.upgrade(url, migrations_dir)
    else:
        pending = migrations.status(url, migrations_dir).pending
        if pending:
            warnings.append(f"{len(pending)} migration(s) pending (--no-migrate): the server stays unready until "
                            "'dynoctl migrate' runs")
    progress("checking the API server's database role")
    warnings += ensure_server_login(runtime, restart_running=False)
    progress("starting the API server")
    if runtime.start("server", build=build, timeout=_left(deadline)):
        started.append("server")
    warnings += getattr(runtime, "notices", [])
    progress("waiting for the API server to be ready")
    wait_for_server(runtime, deadline, need_ready=migrate)
    return UpResult(runtime.name, list(started), [s for s in SERVICES if s not in started], applied,
                    {"api": runtime.api_url(), "database": address(url)}, warnings)


def ensure_server_login(runtime: Runtime, restart_running: bool = True) -> list[str]:
    """The server's own least-privilege login (dynoctl.dbroles), made or repaired by every
    ``up`` and ``migrate``; a stack whose server still used the superuser is moved off it,
    and a running server, whose credentials just changed, is restarted (or only stopped,
    when the caller starts it next). Returns what the user should be told."""
    from dynoctl import dbroles

    if not hasattr(runtime, "env_name"):  # a runtime without an env file (tests' fakes)
        return []
    result = dbroles.ensure_for_runtime(runtime)
    if result.moved_from and _service(runtime, "server").state not in ("stopped", "exited"):
        if restart_running:
            restart(runtime, ["server"])
        else:
            runtime.stop("server")
    message = dbroles.describe(result)
    return [message] if message else []


def wait_for_server(runtime: Runtime, deadline: float, need_ready: bool = True) -> None:
    """Until /ready answers 200 (or, without migrations, until the server answers at all).
    A server whose process is gone, or that does not get there in time, fails with the
    last lines of its log."""
    wanted = ("healthy",) if need_ready else ("healthy", "unhealthy")
    while True:
        probe = probe_server(runtime.api_url())
        if probe.health in wanted:
            return
        state = _service(runtime, "server").state
        if state in ("stopped", "exited"):
            raise _not_ready(runtime, "the API server exited during start-up")
        if time.monotonic() > deadline:
            raise _not_ready(runtime, f"the API server did not become ready in time ({probe.reason or probe.health})")
        time.sleep(0.3)


def _not_ready(runtime: Runtime, message: str) -> DynoctlError:
    tail = list(runtime.logs("server", tail=LOG_LINES_ON_FAILURE))
    return Unreachable(message, hint="fix the cause shown in the log, then run 'dynoctl up' again",
                       details=tail)


def plan_down(runtime: Runtime, remove_data: bool) -> DownPlan:
    running = [s.service for s in runtime.status() if s.state != "stopped"]
    return DownPlan(runtime.name, running, runtime.data_locations() if remove_data else [])


def down(runtime: Runtime, remove_data: bool = False, timeout: float = 30) -> DownResult:
    stopped = [s for s in reversed(SERVICES) if runtime.stop(s, timeout=timeout)]
    removed = runtime.remove_data() if remove_data else []
    return DownResult(runtime.name, stopped, [s for s in SERVICES if s not in stopped], removed)


def restart(runtime: Runtime, services: list[str], timeout: float = 120) -> list[str]:
    """Stop then start the given services (dependents first on the way down)."""
    deadline = time.monotonic() + timeout
    for service in reversed(SERVICES):
        if service in services:
            runtime.stop(service, timeout=_left(deadline))
    for service in SERVICES:
        if service in services:
            runtime.start(service, timeout=_left(deadline))
    if "server" in services:
        wait_for_server(runtime, deadline, need_ready=False)
    return services


def status(runtime: Runtime, migrations_dir: Path) -> StackStatus:
    services = runtime.status()
    if _find(services, "db").state != "running":
        return StackStatus(runtime.name, services, None, "database not running")
    try:
        return StackStatus(runtime.name, services, migrations.status(runtime.database_url(), migrations_dir))
    except DynoctlError as exc:
        return StackStatus(runtime.name, services, None, exc.message)


def _service(runtime: Runtime, name: str) -> ServiceStatus:
    return _find(runtime.status(), name)


def _find(services: list[ServiceStatus], name: str) -> ServiceStatus:
    return next(s for s in services if s.service == name)


def _left(deadline: float) -> float:
    return max(1.0, deadline - time.monotonic())

