"""The Runtime protocol: everything above it (up/down, migrate, backup, rotation,
purge) talks only to this, so each behaves the same on the local and docker runtimes.

Services are named as in stack/compose.yml: ``db`` and ``server`` (SERVICES, in
start order, defined in dynoctl.runtime). Orchestration (start db, wait, migrate, start server, wait for /ready)
lives in ``dynoctl.stack``, not in the runtimes: a runtime only knows how to start,
stop and inspect one service at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Iterator, Protocol

from dynoctl.runtime import SERVICES, check_service  # noqa: F401  (re-exported for runtimes)


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    state: str  # "running" | "stopped" | "starting" | "exited" | "crashed" (its supervisor gave up)
    health: str | None  # "healthy" | "unhealthy" | "starting" | None (no check)
    address: str | None  # host:port reachable from this machine, e.g. "127.0.0.1:5433"
    started_at: datetime | None  # timezone-aware
    detail: str | None = None  # pid, container id, exit reason


class Runtime(Protocol):
    name: str  # "local" | "docker"

    warnings: list[str]  # what stop/status/logs had to work around (e.g. an invalid env file)

    def check(self, services: list[str]) -> None:
        """Check everything starting ``services`` needs (env file, compose file, images,
        ports of what is not running) without changing anything; raise Refused/ConfigError.
        restart and up call it before they stop or start anything."""

    def start(self, service: str, *, build: bool = False, timeout: float = 60) -> bool:
        """Start one service and wait until it accepts connections (db) or its process
        runs (server). Returns False when it was already running (nothing changed).
        Raises Refused (port taken, bad env file) or Unreachable (engine down)."""

    def stop(self, service: str, *, timeout: float = 30) -> bool:
        """Stop one service; False when it was not running (not an error)."""

    def remove_data(self) -> list[str]:
        """Destroy persistent data (cluster dir / named volumes); returns what went.
        Callers stop everything and confirm with the user first."""

    def data_locations(self) -> list[str]:
        """What remove_data would destroy, for the plan shown before it."""

    def status(self) -> list[ServiceStatus]:
        """One entry per service in SERVICES, running or not."""

    def logs(self, service: str, *, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        """Log lines (without trailing newline), oldest first."""

    def exec(
        self,
        service: str,
        argv: list[str],
        *,
        stdin: BinaryIO | None = None,
        stdout: BinaryIO | None = None,
        env: dict[str, str] | None = None,
    ) -> int:
        """Run argv next to a service (inside its container, or with the local
        binaries) streaming stdin/stdout; secrets go in env, never argv. Returns the
        exit code. pg_dump/pg_restore for backups go through here."""

    def database_url(self, dbname: str | None = None) -> str:
        """The database's URL as reachable from this machine, in the env contract's form
        (``postgresql://...?schema=public``; dynoctl.db turns it into a SQLAlchemy URL).
        dynoctl runs migrations and, later, purges through it. Default dbname: pm_app."""

    def api_url(self) -> str:
        """Base URL of the API server as reachable from this machine."""

    def reload(self, service: str) -> None:
        """Ask a running service to re-read its configuration (SIGHUP): the server
        re-reads its JWT key file without dropping requests."""
