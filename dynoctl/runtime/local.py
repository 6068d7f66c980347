"""The local runtime (the embedded default): PostgreSQL from the pgserver wheel (or
DYNO_PG_BINDIR / pg_config) and the API server as a supervised background process.

Everything lives under the project's state dir (.dyno/):
  pg/data, pg/postgres.log     the cluster and its log (owned by the PostgreSQL account)
  run/server.pid               the API server process (pid + start time)
  run/supervisor.pid           its supervisor (restarts it after a crash)
  logs/server.log              the server's output
The server's configuration is stack/env/server.local.env: its PORT is the API port,
and its DATABASE_URL names the port, superuser, password and database of the cluster.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import urlsplit

from dynoctl import dbroles, envfiles, pgcluster, pidfiles, proc, serveruser, supervisor as supervisor_state
from dynoctl.config import Settings
from dynoctl.runtime.base import ServiceStatus, check_service
from dynoctl.runtime.health import follow_file, probe_server

ENV_NAME = "server.local"
HOST = "127.0.0.1"


class LocalRuntime:
    name = "local"
    env_name = ENV_NAME

    def __init__(self, settings: Settings):
        self.settings = settings
        self.layout = settings.layout
        self.state = self.layout.state_dir
        self.pg_root = self.state / "pg"
        self.run_dir = self.state / "run"
        self.server_log = self.state / "logs" / "server.log"
        self.server_pidfile = self.run_dir / "server.pid"
        self.supervisor_pidfile = self.run_dir / "supervisor.pid"
        self.warnings: list[str] = []  # for the user: what start-up noticed, what stopping and inspecting worked around

    def has_live_process(self) -> bool:
        """Whether this project's local stack runs (cheap: pid files only, no env file)."""
        return bool(pidfiles.live_process(self.supervisor_pidfile)
                    or pgcluster.postmaster_pid(self.pg_root / pgcluster.DATA_DIRNAME))

    # -- configuration -----------------------------------------------------
    @cached_property
    def server_env(self) -> dict[str, str]:
        """The server's environment: server.local.env (checked) over its template's
        defaults, without the superuser's credentials (the server never needs them).
        What a start uses: a bad env file refuses before anything starts."""
        values = envfiles.checked_values(self.layout, ENV_NAME, self.settings.environ)
        # Emptied rather than left out: the child's environment starts from dynoctl's own.
        return {**values, **{key: "" for key in dbroles.SUPERUSER_KEYS}}

    @cached_property
    def stack_env(self) -> dict[str, str]:
        """What dynoctl itself needs (ports, the superuser): checked, but a file whose server
        still logs in as the superuser passes (``up`` moves it: dbroles.ensure_for_runtime)."""
        return envfiles.checked_values(self.layout, ENV_NAME, self.settings.environ, database_only=True)

    def forget_env(self) -> None:
        for cached in ("server_env", "stack_env", "config", "db_url_parts"):
            self.__dict__.pop(cached, None)

    @cached_property
    def config(self) -> dict[str, str]:
        """The env file's values for stopping and inspecting, whatever its state (a
        warning in ``warnings`` says what was wrong)."""
        return envfiles.inspectable_values(self.layout, ENV_NAME, lambda: self.stack_env, self.warnings)

    @cached_property
    def db_url_parts(self):
        return urlsplit(self.config["DATABASE_URL"])

    @property
    def db_port(self) -> int:
        try:
            return self.db_url_parts.port or 5432
        except ValueError:
            return 5432

    @property
    def api_port(self) -> int:
        value = self.config.get("PORT", "")
        return int(value) if value.isdigit() else 8000

    @cached_property
    def cluster(self) -> pgcluster.Cluster:
        binaries, run_as = pgcluster.server_programs(self.settings.pg_bindir, self.settings.pg_user)
        return pgcluster.Cluster(self.pg_root, self.db_port, binaries, run_as, HOST)

    # -- Runtime protocol --------------------------------------------------
    def check(self, services: list[str]) -> None:
        """Everything starting ``services`` needs, checked before anything is stopped or
        started: the env file, PostgreSQL's binaries, the ports of what is not running.
        The env file is checked as the database needs it: what ``up`` repairs (a server
        still logging in as the superuser) is checked again when the server starts."""
        _ = self.stack_env, self.cluster
        if "db" in services and not self.cluster.pid():
            pgcluster.ensure_port_free(self.db_port, "PostgreSQL", HOST)
        if "server" in services and not any(self._server_processes()):
            pgcluster.ensure_port_free(self.api_port, "the API server", HOST)

    def start(self, service: str, *, build: bool = False, timeout: float = 60) -> bool:
        check_service(service)
        _ = self.server_env if service == "server" else self.stack_env  # a bad env file refuses here
        return self._start_db(timeout) if service == "db" else self._start_server()

    def stop(self, service: str, *, timeout: float = 30) -> bool:
        check_service(service)
        return self.cluster.stop(timeout) if service == "db" else self._stop_server(timeout)

    def data_locations(self) -> list[str]:
        return [str(self.pg_root), str(self._assets_dir())]

    def remove_data(self) -> list[str]:
        import shutil

        removed = [p for p in self.data_locations() if Path(p).exists()]
        if self.pg_root.exists():
            self.cluster.remove()
        shutil.rmtree(self._assets_dir(), ignore_errors=True)
        return removed

    def status(self) -> list[ServiceStatus]:
        return [self._db_status(), self._server_status()]

    def logs(self, service: str, *, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        check_service(service)
        path = self.pg_root / pgcluster.LOG_FILENAME if service == "db" else self.server_log
        return follow_file(path, tail=tail, follow=follow)

    def exec(self, service: str, argv: list[str], *, stdin: BinaryIO | None = None,
             stdout: BinaryIO | None = None, env: dict[str, str] | None = None) -> int:
        check_service(service)
        if service == "db":
            # Client programs (pg_dump, psql ...) from the same installation, connected
            # through the environment so the password never reaches argv.
            program = self.cluster.bin.path(argv[0])
            argv = [str(program) if program.is_file() else argv[0], *argv[1:]]
            env = {**self._libpq_env(), **(env or {})}
        else:
            argv = [sys.executable if argv[0] in ("python", "python3") else argv[0], *argv[1:]]
            env = {**self._server_environment(), **(env or {})}
        child = proc.spawn(argv, env=env, cwd=self.settings.project_dir, stdin=stdin or None,
                           stdout=stdout or None)
        return child.wait()

    def database_url(self, dbname: str | None = None) -> str:
        """The superuser's URL (dynoctl's own work); the server has its own login."""
        parts = self.db_url_parts
        path = f"/{dbname}" if dbname else parts.path
        url = f"postgresql://{HOST}:{self.db_port}{path}" + (f"?{parts.query}" if parts.query else "")
        return dbroles.with_credentials(url, *dbroles.superuser_credentials(self.stack_env))

    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    def reload(self, service: str) -> None:
        check_service(service)
        if service == "db":
            if self.cluster.pid():
                self.cluster.reload()
            return
        supervisor = pidfiles.live_process(self.supervisor_pidfile)
        if supervisor is None:
            from dynoctl.errors import NotRunning

            raise NotRunning("the API server is not running", hint="run 'dynoctl up'")
        supervisor.send_signal(signal.SIGHUP)

    # -- db ----------------------------------------------------------------
    def _start_db(self, timeout: float) -> bool:
        self._make_state_dirs()
        cluster = self.cluster
        if not cluster.initialized:
            cluster.init(*dbroles.superuser_credentials(self.stack_env))
        started = cluster.start(timeout)
        cluster.wait_ready(timeout)
        self._ensure_database()
        return started

    def _ensure_database(self) -> None:
        import psycopg

        name = self.db_url_parts.path.lstrip("/")
        with psycopg.connect(**self._connect_kwargs("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                from psycopg import sql

                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def _connect_kwargs(self, dbname: str) -> dict:
        user, password = dbroles.superuser_credentials(self.stack_env)
        return {"host": HOST, "port": self.db_port, "user": user, "password": password, "dbname": dbname,
                "connect_timeout": 5}

    def _libpq_env(self) -> dict[str, str]:
        kw = self._connect_kwargs(self.db_url_parts.path.lstrip("/"))
        return {"PGHOST": kw["host"], "PGPORT": str(kw["port"]), "PGUSER": kw["user"],
                "PGPASSWORD": kw["password"], "PGDATABASE": kw["dbname"]}

    def _db_status(self) -> ServiceStatus:
        pid = self.cluster.pid() if self.cluster.initialized else None
        if not pid:
            return ServiceStatus("db", "stopped", None, None, None)
        healthy = self.cluster.accepts_connections()
        return ServiceStatus("db", "running", "healthy" if healthy else "starting", f"{HOST}:{self.db_port}",
                             _timestamp(self.cluster.started_at()), f"pid {pid}")

    # -- server ------------------------------------------------------------
    def _start_server(self) -> bool:
        if pidfiles.live_process(self.supervisor_pidfile):
            return False
        env = self._server_environment()  # validates the env file before anything starts
        pgcluster.ensure_port_free(self.api_port, "the API server", HOST)
        self._make_state_dirs()
        supervisor_state.state_file(self.server_pidfile).unlink(missing_ok=True)
        account = self._server_account()
        argv = [sys.executable, "-m", "dynoserver", "--host", HOST, "--port", str(self.api_port),
                "--no-server-header"]
        run_as = ["--user", account.user] if account else []
        with open(self.server_log, "ab") as log:
            supervisor = proc.spawn(
                [sys.executable, "-m", "dynoctl.supervisor", self.server_pidfile, *run_as, "--", *argv],
                env=env, cwd=self.settings.project_dir, stdout=log, stderr=log, detach=True)
        pidfiles.write(self.supervisor_pidfile, supervisor.pid)
        return True

    def _stop_server(self, timeout: float) -> bool:
        supervisor_state.state_file(self.server_pidfile).unlink(missing_ok=True)
        supervisor, server = self._server_processes()
        if supervisor is None and server is None:
            return False
        import psutil

        alive = [p for p in (supervisor, server) if p]
        for p in alive:
            p.terminate()
        _gone, still = psutil.wait_procs(alive, timeout=timeout)
        for p in still:
            p.kill()
        self.supervisor_pidfile.unlink(missing_ok=True)
        self.server_pidfile.unlink(missing_ok=True)
        return True

    def _server_environment(self) -> dict[str, str]:
        # MIGRATIONS_DIR: the scripts whose head the server's /ready expects; the
        # project's own first, which 'migrate new' creates in a bundled-stack project.
        own = self.settings.project_dir / "migrations"
        return {**self.server_env, "MIGRATIONS_DIR": os.pathsep.join(dict.fromkeys(
            [str(own), str(self.layout.migrations_dir)]))}

    def _server_processes(self):
        """(supervisor, server) processes, None for each that does not run."""
        return pidfiles.live_process(self.supervisor_pidfile), pidfiles.live_process(self.server_pidfile)

    def _server_status(self) -> ServiceStatus:
        supervisor, server = self._server_processes()
        if supervisor is None and server is None:
            gave_up = supervisor_state.read_gave_up(self.server_pidfile)
            if gave_up:
                return ServiceStatus("server", "crashed", None, None, None,
                                     f"exited {gave_up.get('crashes')} times in a row right after start, last exit "
                                     f"status {gave_up.get('last_exit')}; the supervisor gave up at {gave_up.get('at')}")
            return ServiceStatus("server", "stopped", None, None, None)
        if server is None:  # the supervisor is between restarts
            return ServiceStatus("server", "starting", None, None, None, f"supervisor pid {supervisor.pid}")
        detail = f"pid {server.pid}"
        if supervisor is None:
            detail += "; its supervisor is gone, so a crash would not be restarted ('dynoctl restart server')"
        return ServiceStatus("server", "running", probe_server(self.api_url()).health,
                             f"{HOST}:{self.api_port}", _timestamp(server.create_time()), detail)

    def _make_state_dirs(self) -> None:
        # .dyno may be entered but not listed by others: PostgreSQL's own account must
        # reach .dyno/pg; logs, pid files and backups are ours alone.
        self.state.mkdir(mode=0o711, exist_ok=True)
        for private in (self.run_dir, self.server_log.parent, self.state / "backups"):
            private.mkdir(mode=0o700, exist_ok=True)
        serveruser.prepare_keys_dir(self.state / "keys", None)

    def _server_account(self) -> proc.RunAs | None:
        """As root, the unprivileged account the server runs as (dynoctl.serveruser), with
        its uploads and read access to the key file; otherwise None (ourselves)."""
        account, warning = serveruser.server_account(self.settings.get("DYNO_SERVER_USER"), self.settings.project_dir)
        if warning:
            self.warnings.append(warning)
        serveruser.own_private_dir(self._assets_dir(), account)
        serveruser.prepare_keys_dir(self.state / "keys", account)
        return account

    def _assets_dir(self) -> Path:
        value = self.config.get("ASSETS_DIR") or ".dyno/assets"
        return (self.settings.project_dir / value).resolve()


def _timestamp(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, timezone.utc) if epoch else None
