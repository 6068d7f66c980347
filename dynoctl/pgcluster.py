"""An embedded PostgreSQL cluster: initdb, start, stop and inspect one data directory.

Binaries come from DYNO_PG_BINDIR, else the ``pgserver`` wheel (PostgreSQL 16), else
a system install found through ``pg_config``. PostgreSQL refuses to run as root
(https://www.postgresql.org/docs/current/server-start.html), so as root every server
program runs as an unprivileged system account, created on first use.

Layout under ``root`` (owned by the account that runs PostgreSQL, mode 0700):
``data/`` (the cluster), ``postgres.log``.
"""

from __future__ import annotations

import hashlib
import secrets
import importlib.util
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil

from dynoctl import proc
from dynoctl.errors import ConfigError, DynoctlError, Refused, Unreachable
from dynoctl.proc import RunAs

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres", "pg_dump", "pg_restore", "psql")
DEFAULT_PG_USER = "dynoctl-pg"
DATA_DIRNAME = "data"  # the cluster, under a Cluster's root
LOG_FILENAME = "postgres.log"
SETTINGS_FILE = "dynoctl.conf"
STAGING_PREFIX = ".initdb-"  # a cluster being created, renamed to data/ when complete


@dataclass(frozen=True)
class PgBinaries:
    bindir: Path
    source: str  # "DYNO_PG_BINDIR" | "pgserver package" | "pg_config"

    def path(self, program: str) -> Path:
        return self.bindir / program


def find_binaries(explicit: Path | None = None) -> PgBinaries:
    """Where initdb, pg_ctl, postgres, pg_dump ... live."""
    if explicit is not None:
        return _checked(PgBinaries(explicit, "DYNO_PG_BINDIR"))
    # Only the wheel's files are used: find it without importing it (its import
    # pulls in more than we need).
    spec = importlib.util.find_spec("pgserver")
    if spec and spec.submodule_search_locations:
        bindir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
        if bindir.is_dir():
            return _checked(PgBinaries(bindir, "pgserver package"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = Path(proc.run([pg_config, "--bindir"]).stdout.strip())
        return _checked(PgBinaries(bindir, "pg_config"))
    raise ConfigError(
        "no PostgreSQL server binaries found",
        hint="reinstall dynoctl (it depends on the pgserver package) or set DYNO_PG_BINDIR to a PostgreSQL bin directory",
    )


def _checked(binaries: PgBinaries) -> PgBinaries:
    missing = [p for p in SERVER_PROGRAMS if not binaries.path(p).is_file()]
    if missing:
        raise ConfigError(
            f"{binaries.bindir} ({binaries.source}) lacks {', '.join(missing)}",
            hint="point DYNO_PG_BINDIR at a directory with the PostgreSQL server programs",
        )
    return binaries


def _others_can_run(path: Path) -> bool:
    return all(os.stat(d).st_mode & 0o001 for d in path.parents) and bool(os.stat(path).st_mode & 0o001)


def reachable_by_others(binaries: PgBinaries, cache_root: Path = Path("/var/cache/dynoctl")) -> PgBinaries:
    """Binaries an unprivileged account can execute. A pip install under /root (mode
    0700) is out of its reach, so the installation is copied once to a world-readable
    cache, keeping its shape: PostgreSQL finds lib/ and share/ relative to bin/, and
    the wheel's binaries find their bundled libraries at $ORIGIN/../../../pgserver.libs."""
    if _others_can_run(binaries.path("postgres")):
        return binaries
    install = binaries.bindir.parent  # .../pgserver/pginstall
    stamp = f"{install}:{binaries.path('postgres').stat().st_mtime_ns}"
    target = cache_root / f"postgresql-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"
    bindir = target / install.parent.name / install.name / "bin"
    if not (bindir / "postgres").is_file():
        _copy_install(install, target, cache_root)
    return PgBinaries(bindir, f"{binaries.source}, copied to {target}")


def _copy_install(install: Path, target: Path, cache_root: Path) -> None:
    cache_root.mkdir(parents=True, exist_ok=True, mode=0o755)
    staging = Path(tempfile.mkdtemp(dir=cache_root, prefix=".copy-"))
    for part in ("bin", "lib", "share"):
        shutil.copytree(install / part, staging / install.parent.name / install.name / part, symlinks=True)
    libs = install.parent.parent / f"{install.parent.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, staging / libs.name, symlinks=True)
    os.chmod(staging, 0o755)
    try:
        staging.rename(target)
    except OSError:  # another dynoctl finished the same copy first
        shutil.rmtree(staging, ignore_errors=True)


def ensure_system_user(name: str) -> RunAs:
    """The unprivileged account PostgreSQL runs as when we are root."""
    try:
        import pwd

        pwd.getpwnam(name)
    except KeyError:
        proc.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                  "--shell", "/usr/sbin/nologin", name])
    return RunAs(name)


def server_programs(explicit: Path | None = None, pg_user: str = DEFAULT_PG_USER) -> tuple[PgBinaries, RunAs | None]:
    """The binaries to run a cluster with, and the account to run them as: as root an
    unprivileged one, with binaries it can reach; otherwise ourselves."""
    binaries = find_binaries(explicit)
    if not proc.is_root():
        return binaries, None
    return reachable_by_others(binaries), ensure_system_user(pg_user)


@contextmanager
def scratch_cluster(parent: Path, port: int, superuser: str = "postgres") -> Iterator[tuple[Cluster, str]]:
    """A throwaway cluster under ``parent`` with a random superuser password: started
    on entry, stopped and deleted on exit (tests, benchmarks)."""
    binaries, run_as = server_programs()
    cluster = Cluster(parent / "pg", port, binaries, run_as)
    password = secrets.token_urlsafe(24)
    cluster.init(superuser, password)
    cluster.start()
    try:
        yield cluster, password
    finally:
        cluster.stop()
        cluster.remove()


def port_holder(port: int, host: str = "127.0.0.1") -> str | None:
    """None if host:port is free to listen on, else a description of who holds it."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return None
        except OSError:
            pass
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                p = psutil.Process(conn.pid)
                return f"{p.name()} (pid {conn.pid})"
    except (psutil.Error, OSError):
        pass
    return "another program"


def ensure_port_free(port: int, what: str, host: str = "127.0.0.1") -> None:
    holder = port_holder(port, host)
    if holder:
        raise Refused(
            f"port {port} on {host} is already in use by {holder}; {what} cannot listen there",
            hint=f"stop {holder} or choose another port for {what}",
        )


def postmaster_pid(datadir: Path) -> int | None:
    """The live postmaster's pid; None if none runs (a stale pid file counts as none)."""
    try:
        pid = int((datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        process = psutil.Process(pid)
        return pid if "postgres" in process.name() and process.status() != psutil.STATUS_ZOMBIE else None
    except (OSError, ValueError, psutil.Error):
        return None


class Cluster:
    def __init__(self, root: Path, port: int, binaries: PgBinaries, run_as: RunAs | None,
                 host: str = "127.0.0.1"):
        self.root = root
        self.datadir = root / DATA_DIRNAME
        self.logfile = root / LOG_FILENAME
        self.port = port
        self.host = host
        self.bin = binaries
        self.run_as = run_as

    # -- inspection --------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").is_file()

    def pid(self) -> int | None:
        return postmaster_pid(self.datadir)

    def started_at(self) -> float | None:
        pid = self.pid()
        try:
            return psutil.Process(pid).create_time() if pid else None
        except psutil.Error:
            return None

    # -- lifecycle ---------------------------------------------------------
    def init(self, superuser: str, password: str) -> None:
        """initdb with password authentication for TCP (the only way in).

        Atomic: the cluster is made in a staging directory beside ``data/``, completed
        there (dynoctl's settings include, without which PostgreSQL would listen on
        its default port and socket), and renamed into place last. An interruption at
        any point (Ctrl-C, SIGTERM, kill -9) leaves no ``data/``, so the next call
        starts again; its leftovers are removed here."""
        self._prepare_root()
        self._remove_partial_inits()
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=STAGING_PREFIX))
        self._chown(staging)
        with tempfile.NamedTemporaryFile("w", dir=self.root, prefix=".pw-", delete=False) as pwfile:
            os.chmod(pwfile.name, 0o600)
            pwfile.write(password + "\n")
        try:
            self._chown(Path(pwfile.name))
            self._pg("initdb", "-D", staging, "-U", superuser, f"--pwfile={pwfile.name}",
                     "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
                     "--locale=C", timeout=180)
            with open(staging / "postgresql.conf", "a") as conf:
                conf.write(f"\ninclude_if_exists = '{SETTINGS_FILE}'\n")
            # initdb does not record its directory's path in the cluster, so it can move.
            os.rename(staging, self.datadir)
        finally:
            os.unlink(pwfile.name)
            shutil.rmtree(staging, ignore_errors=True)

    def _remove_partial_inits(self) -> None:
        for leftover in self.root.glob(STAGING_PREFIX + "*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in self.root.glob(".pw-*"):
            leftover.unlink(missing_ok=True)
        # A data/ without PG_VERSION is an initdb of an older dynoctl that was cut short.
        if self.datadir.exists() and not self.initialized and not self.pid():
            shutil.rmtree(self.datadir, ignore_errors=True)

    def start(self, timeout: float = 60) -> bool:
        """Start the postmaster on host:port; False if it already runs."""
        if self.pid():
            return False
        self._remove_stale_pidfile()
        ensure_port_free(self.port, "PostgreSQL", self.host)
        self._write_settings()
        try:
            self._pg("pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w", "-t", str(int(timeout)),
                     "start", timeout=timeout + 10)
        except proc.ProgramFailed as exc:
            raise Unreachable(
                f"PostgreSQL did not start: {self.last_log_line() or exc.message}",
                hint=f"see {self.logfile}",
            ) from exc
        except BaseException:  # interrupted: pg_ctl is gone, the postmaster it launched may not be
            self._stop_launched()
            raise
        return True

    def _stop_launched(self, grace: float = 5) -> None:
        """Stop a postmaster whose start was interrupted, once it has written its pid
        file (it runs detached, so it outlives the pg_ctl that launched it)."""
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.pid():
                self.stop()
                return
            if not self._launching():
                return
            time.sleep(0.1)

    def _launching(self) -> bool:
        target = str(self.datadir)
        for p in psutil.process_iter(["name", "cmdline"]):
            try:
                if "postgres" in (p.info["name"] or "") and target in (p.info["cmdline"] or []):
                    return True
            except psutil.Error:
                continue
        return False

    def stop(self, timeout: float = 60) -> bool:
        if not self.pid():
            self._remove_stale_pidfile()
            return False
        # "fast": roll back open transactions and disconnect clients, but shut down cleanly.
        self._pg("pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "-t", str(int(timeout)), "stop",
                 timeout=timeout + 10)
        return True

    def remove(self) -> None:
        if self.pid():
            raise DynoctlError("refusing to remove the data of a running PostgreSQL", hint="stop it first")
        shutil.rmtree(self.root, ignore_errors=True)

    def reload(self) -> None:
        self._pg("pg_ctl", "-D", self.datadir, "reload")

    def accepts_connections(self) -> bool:
        """pg_isready: the server answers and is not starting up or shutting down."""
        done = proc.run([self.bin.path("pg_isready"), "-q", "-h", self.host, "-p", str(self.port), "-t", "2"],
                        check=False)
        return done.returncode == 0

    def wait_ready(self, timeout: float = 30) -> None:
        """Block until the server accepts connections."""
        deadline = time.monotonic() + timeout
        while not self.accepts_connections():
            if time.monotonic() > deadline:
                raise Unreachable(f"PostgreSQL on {self.host}:{self.port} does not accept connections",
                                  hint=f"see {self.logfile}")
            time.sleep(0.2)

    def last_log_line(self) -> str | None:
        try:
            lines = [ln for ln in self.logfile.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return None
        return lines[-1] if lines else None

    # -- helpers -----------------------------------------------------------
    def _pg(self, program: str, *args, timeout: float | None = None):
        return proc.run([self.bin.path(program), *args], run_as=self.run_as, timeout=timeout,
                        env={"LC_ALL": "C"})

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        self._chown(self.root)
        if self.run_as:
            self._check_traversable()

    def _check_traversable(self) -> None:
        # The unprivileged account must be able to reach root through every parent.
        for parent in self.root.parents:
            if not os.stat(parent).st_mode & 0o001:
                raise Refused(
                    f"{parent} is not searchable by other users, so PostgreSQL (running as "
                    f"{self.run_as.user}) cannot reach {self.root}",
                    hint=f"chmod o+x {parent}, or choose a --project-dir outside it",
                )

    def _chown(self, path: Path) -> None:
        if self.run_as:
            os.chown(path, self.run_as.uid, self.run_as.gid)

    def _write_settings(self) -> None:
        # Rewritten at every start so a changed port takes effect; TCP on loopback only,
        # no Unix socket (its default directory may not exist or be writable).
        path = self.datadir / SETTINGS_FILE
        path.write_text(
            "# written by dynoctl at every start; edit postgresql.conf for your own settings\n"
            f"port = {self.port}\nlisten_addresses = '{self.host}'\nunix_socket_directories = ''\n"
        )
        self._chown(path)

    def _remove_stale_pidfile(self) -> None:
        # A crash or reboot leaves postmaster.pid behind; if its pid is now some other
        # process PostgreSQL would refuse to start, so drop it once we know it is stale.
        pidfile = self.datadir / "postmaster.pid"
        if pidfile.exists() and not self.pid():
            pidfile.unlink()
