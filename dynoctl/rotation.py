"""Secret rotation that logs no one out: plans and their application.

JWT keys (``dynoserver.keys`` documents the key file). A rotation of a purpose
(access, refresh) runs in two phases, so no process ever signs with a key another
process cannot verify:

1. a new key is added *verify-only* and recorded as the purpose's ``pending`` kid;
   the file is written, the server reloaded (SIGHUP), and every worker must report
   the new key-set version through ``/health`` (``workers``) before the deadline;
2. the pending key is promoted to signing, the previous signing key gets a
   ``retire_after`` (now + the purpose's token TTL + a margin), the file is written
   and the server reloaded and confirmed again.

A server that does not confirm phase 1 in time: the pending keys are taken out again
(nothing half-applied). A run killed anywhere leaves the key file whole (atomic
writes) with ``pending`` saying where it stopped; the next run finishes it. Keys
past their ``retire_after`` are pruned by every run (and by ``--prune`` alone).
The first rotation writes the env secrets into the file under their derived kids:
the same key set (the same version), so every token keeps verifying.

Database logins (``dynoctl.dbroles``): the server alternates between dyno_app_a and
dyno_app_b. The other login gets a fresh password and LOGIN, DATABASE_URL is
rewritten in the env file and in ``database.json`` beside the key file (which the
server re-reads on SIGHUP; a container's environment is fixed), every worker must
report the new login, then the old login is disabled and its sessions ended. If
the run is cut short, the database says so (both logins can log in) and the next
run moves the server onto the env file's login and disables the other first.

Core module: no printing; results are dataclasses. Secrets never leave this module
except into the files and the database.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from dynoctl.atomicfile import keep_copy, remove_stale_temps, write_atomic
from dynoctl.errors import ConfigError, DynoctlError, PartlyFailed, Refused, Unreachable

PURPOSES = ("access", "refresh")
KEYS_FILENAME = "jwt-keys.json"
CREDENTIAL_FILENAME = "database.json"  # dynoserver.db.CREDENTIAL_FILENAME (the server reads it)
AGES_FILENAME = "secret-ages.json"
SECRET_BYTES = 48  # 384 bits (>= 256 asked)
GRACE_MARGIN_SECONDS = 300
CONFIRM_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_AGE_DAYS = 90
TTL_KEYS = {"access": ("ACCESS_TOKEN_TTL_SECONDS", 900), "refresh": ("REFRESH_TOKEN_TTL_SECONDS", 604800)}
ENV_SECRET_KEYS = {"access": "JWT_ACCESS_TOKEN_SECRET", "refresh": "JWT_REFRESH_TOKEN_SECRET"}


# ------------------------------------------------------------------- results
@dataclass(frozen=True)
class RotationOptions:
    purposes: tuple[str, ...] = PURPOSES  # JWT purposes to rotate; () = none
    db_password: bool = False
    db_superuser: bool = False
    prune_only: bool = False
    revoke_all: bool = False
    grace_margin: int = GRACE_MARGIN_SECONDS
    confirm_timeout: float = CONFIRM_TIMEOUT_SECONDS


@dataclass(frozen=True)
class RotationPlan:
    """What a run would change; holds no secret value (``--dry-run`` prints it whole)."""

    runtime: str
    env_file: str
    keys_file: str
    credential_file: str
    rotate: list[str]  # JWT purposes getting a new key
    resume: list[str]  # purposes whose previous run stopped after phase 1
    migrate_from_env: bool  # no key file yet: it starts with the env secrets
    prune: list[str]  # kids past their grace
    grace_seconds: dict[str, int]
    db_password: str | None  # "dyno_app_a -> dyno_app_b"
    db_superuser: str | None  # the superuser's name
    revoke_all: bool
    server_running: bool
    reload: list[str]  # what gets reloaded
    steps: list[str]


@dataclass
class RotationResult:
    plan: RotationPlan
    steps: list[str] = field(default_factory=list)  # what was done, in order
    new_kids: dict[str, str] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)
    keyset: str | None = None  # the version every worker confirmed
    db_login: str | None = None
    sessions_revoked: int | None = None
    reloaded: bool = False
    wall_seconds: float = 0.0
    note: str | None = None


@dataclass(frozen=True)
class SecretAge:
    name: str
    file: str
    age_days: float | None
    since: str | None  # ISO time of the last change we know of
    source: str  # "key file" | "rotation record" | "file modified"
    stale: bool


# ------------------------------------------------------------------ locations
@dataclass(frozen=True)
class Target:
    env_path: Path
    keys_path: Path
    credential_path: Path
    keys_mode: int
    state_dir: Path


def locate(runtime, layout) -> Target:
    """Where this runtime's env file, key file and credential file are (host paths)."""
    from dynoctl import envfiles

    env = envfiles.env_file(layout, f"server.{runtime.name}")
    keys_dir = layout.state_dir / "keys"
    if runtime.name == "local":
        values = _env_values(env.path)
        configured = values.get("JWT_KEYS_FILE") or str(keys_dir / KEYS_FILENAME)
        keys_path = (layout.state_dir.parent / configured).resolve()
    else:  # the compose file mounts .dyno/keys at /data/keys
        keys_path = keys_dir / KEYS_FILENAME
    # A server that runs as another account reads through the group: the container's
    # (in dynoctl's group) and, as root, the local one (dynoctl.serveruser makes the
    # key directory setgid to its group). Otherwise nobody but us.
    shared = runtime.name != "local" or (keys_path.parent.exists() and keys_path.parent.stat().st_mode & 0o2000)
    mode = 0o640 if shared else 0o600
    return Target(env.path, keys_path, keys_path.parent / CREDENTIAL_FILENAME, mode, layout.state_dir)


def _env_values(path: Path) -> dict[str, str]:
    from dynoctl import envfiles

    if not path.exists():
        raise ConfigError(f"{path} does not exist", hint="run 'dynoctl env init' to create it")
    text = envfiles.read_text(path)  # ConfigError (exit 3) when unreadable
    return envfiles.parse(text).values


# -------------------------------------------------------------- key documents
def read_document(path: Path) -> dict | None:
    """The key file's document, validated; None when there is none yet."""
    from dynoserver.keys import KeyConfigError, keyset_from_file

    if not path.exists():
        return None
    try:
        keyset_from_file(path)
        return json.loads(path.read_text(encoding="utf-8"))
    except KeyConfigError as exc:
        raise ConfigError(f"key file is corrupt: {exc}",
                          hint=f"restore the newest good copy beside it ({path.name}.bak-*) and rerun") from None


def document_from_env(values: dict[str, str], now: float) -> dict:
    """The first key file: the env secrets under their derived kids (the same key set)."""
    from dynoserver.keys import derive_kid

    document = {}
    for purpose in PURPOSES:
        secret = values.get(ENV_SECRET_KEYS[purpose], "")
        if not secret:
            raise ConfigError(f"{ENV_SECRET_KEYS[purpose]} is empty and there is no key file",
                              hint="run 'dynoctl env check'")
        kid = derive_kid(purpose, secret)
        document[purpose] = {"signing": kid, "keys": [{"kid": kid, "secret": secret, "created_at": None}]}
    return document


def version_of(document: dict) -> str:
    from dynoserver.keys import keyset_from_document

    return keyset_from_document(document).version


def new_kid(purpose: str, now: float) -> str:
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{purpose[0]}-{stamp}-{secrets.token_hex(3)}"


def add_pending(document: dict, purpose: str, now: float) -> str:
    kid = new_kid(purpose, now)
    ring = document[purpose]
    ring["keys"].append({"kid": kid, "secret": secrets.token_urlsafe(SECRET_BYTES), "created_at": now})
    ring["pending"] = kid
    return kid


def drop_pending(document: dict, purpose: str) -> None:
    ring = document[purpose]
    kid = ring.pop("pending", None)
    ring["keys"] = [k for k in ring["keys"] if k["kid"] != kid]


def promote(document: dict, purpose: str, now: float, grace: int) -> str:
    ring = document[purpose]
    kid = ring.pop("pending")
    for key in ring["keys"]:
        if key["kid"] == ring["signing"]:
            key["retire_after"] = now + grace
    ring["signing"] = kid
    return kid


def expired(document: dict, now: float) -> list[str]:
    return [k["kid"] for purpose in PURPOSES for k in document[purpose]["keys"]
            if k.get("retire_after") is not None and k["retire_after"] <= now
            and k["kid"] != document[purpose]["signing"]]


def prune(document: dict, now: float) -> list[str]:
    gone = expired(document, now)
    for purpose in PURPOSES:
        document[purpose]["keys"] = [k for k in document[purpose]["keys"] if k["kid"] not in gone]
    return gone


def replace_all(document: dict, now: float) -> dict[str, str]:
    """--revoke-all: one fresh signing key per purpose, nothing else verifies."""
    kids = {}
    for purpose in PURPOSES:
        kid = new_kid(purpose, now)
        document[purpose] = {"signing": kid, "keys": [
            {"kid": kid, "secret": secrets.token_urlsafe(SECRET_BYTES), "created_at": now}]}
        kids[purpose] = kid
    return kids


def write_document(target: Target, document: dict) -> str:
    """Write the key file atomically (previous copy kept), re-read it, return its version."""
    from dynoserver.keys import KeyConfigError, keyset_from_file

    expected = version_of(document)  # validates before anything is written
    target.keys_path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    remove_stale_temps(target.keys_path.parent, target.keys_path.name)
    keep_copy(target.keys_path)
    write_atomic(target.keys_path, json.dumps(document, indent=2) + "\n", mode=target.keys_mode)
    try:
        found = keyset_from_file(target.keys_path).version
    except KeyConfigError as exc:
        raise DynoctlError(f"the key file just written does not read back: {exc}",
                           hint=f"restore {target.keys_path.name}.bak-* (newest) and rerun") from None
    if found != expected:
        raise DynoctlError("the key file just written reads back different keys",
                           hint=f"restore {target.keys_path.name}.bak-* (newest) and rerun")
    return found


# ------------------------------------------------------------------- planning
def make_plan(runtime, layout, options: RotationOptions, now: float | None = None) -> RotationPlan:
    now = time.time() if now is None else now
    target = locate(runtime, layout)
    values = _env_values(target.env_path)
    document = read_document(target.keys_path)
    migrate = document is None and bool(options.purposes or options.revoke_all or options.prune_only)
    if document is None:
        document = document_from_env(values, now)
    resume = [p for p in PURPOSES if document[p].get("pending")]
    rotate = [] if options.prune_only or options.revoke_all else [p for p in options.purposes if p not in resume]
    grace = {p: _ttl(values, p) + options.grace_margin for p in PURPOSES}
    db_from = _db_login(values) if options.db_password else None
    db_password = f"{db_from} -> {_other(db_from)}" if db_from else None
    superuser = (values.get("POSTGRES_USER") or "postgres") if options.db_superuser else None
    running = server_running(runtime)
    steps = _describe(target, migrate, rotate, resume, expired(document, now), grace, db_password, superuser,
                      options.revoke_all, running, runtime.name)
    return RotationPlan(runtime.name, str(target.env_path), str(target.keys_path), str(target.credential_path),
                        rotate, resume, migrate, expired(document, now), grace, db_password, superuser,
                        options.revoke_all, running, [f"server ({runtime.name})"] if running else [], steps)


def _ttl(values: dict[str, str], purpose: str) -> int:
    name, default = TTL_KEYS[purpose]
    raw = values.get(name) or ""
    return int(raw) if raw.isdigit() else default


def _db_login(values: dict[str, str]) -> str:
    from dynoctl import dbroles

    login = dbroles.active_login(values.get("DATABASE_URL", ""))
    if login not in dbroles.LOGINS:
        raise Refused(f"the server logs in as {login!r}, not one of dynoctl's logins {', '.join(dbroles.LOGINS)}",
                      hint="run 'dynoctl up' or 'dynoctl migrate' first: they move the server onto its own login")
    return login


def _other(login: str) -> str:
    from dynoctl import dbroles

    return dbroles.other_login(login)


def _describe(target, migrate, rotate, resume, prune_kids, grace, db_password, superuser, revoke_all, running,
              runtime_name) -> list[str]:
    steps = []
    if migrate:
        steps.append(f"create {target.keys_path} from the env secrets (same keys, no token invalidated)")
    for purpose in resume:
        steps.append(f"finish the interrupted {purpose} rotation (confirm, then promote its pending key)")
    for purpose in rotate:
        steps.append(f"{purpose}: add a new 256+ bit key verify-only, reload, confirm every worker, promote it; "
                     f"the old key verifies for {grace[purpose]}s more")
    if prune_kids:
        steps.append(f"remove {len(prune_kids)} key(s) past their grace: {', '.join(prune_kids)}")
    if revoke_all:
        steps.append("REVOKE ALL: replace every JWT key (all outstanding tokens rejected) and revoke every session")
    if db_password:
        steps.append(f"database login {db_password}: new password, DATABASE_URL in {target.env_path} and "
                     f"{target.credential_path}, move the server, then disable the old login")
    if superuser:
        steps.append(f"database superuser {superuser!r}: new password, POSTGRES_PASSWORD in {target.env_path}")
    if running:
        steps.append(f"reload the running server ({runtime_name}: SIGHUP) and wait until every worker confirms")
    else:
        steps.append("the server is not running: files only, nothing to reload")
    return steps


def server_running(runtime) -> bool:
    try:
        return any(s.service == "server" and s.state == "running" for s in runtime.status())
    except DynoctlError:
        return False


# ------------------------------------------------------------------- applying
Progress = Callable[[str], None]


def apply(plan: RotationPlan, runtime, layout, options: RotationOptions, progress: Progress = lambda _: None,
          clock: Callable[[], float] = time.time) -> RotationResult:
    started = time.monotonic()
    target = locate(runtime, layout)
    result = RotationResult(plan)
    server = _Server(runtime, plan.server_running, options.confirm_timeout, progress)
    if options.db_superuser:
        _rotate_superuser(target, runtime, result, progress)
    if options.db_password or _db_interrupted(target, runtime):
        _rotate_db_login(target, runtime, server, result, progress, fresh=options.db_password)
    if plan.rotate or plan.resume or plan.prune or plan.migrate_from_env or options.revoke_all:
        _rotate_keys(plan, target, server, result, options, progress, clock)
    if options.revoke_all:
        result.sessions_revoked = _revoke_sessions(runtime)
        result.steps.append(f"revoked {result.sessions_revoked} session(s)")
    result.reloaded = server.reloaded
    result.wall_seconds = round(time.monotonic() - started, 3)
    if not plan.server_running:
        result.note = "the server is not running: the files were rotated, nothing needed reloading"
    return result


class _Server:
    """Reload-and-confirm against the running server (a no-op when it is not running)."""

    def __init__(self, runtime, running: bool, timeout: float, progress: Progress):
        self.runtime, self.running, self.timeout, self.progress = runtime, running, timeout, progress
        self.reloaded = False

    def reload_and_confirm(self, keyset: str | None = None, db_login: str | None = None) -> bool:
        """SIGHUP, then wait until every worker reports ``keyset`` / ``db_login``. False on timeout."""
        if not self.running:
            return True
        self.runtime.reload("server")
        self.reloaded = True
        self.progress("waiting for every server worker to confirm")
        return wait_for_workers(self.runtime.api_url(), keyset, db_login, self.timeout)


def wait_for_workers(api_url: str, keyset: str | None, db_login: str | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if workers_agree(read_health(api_url), keyset, db_login):
            return True
        if time.monotonic() >= deadline:
            return False
        # Each poll is a request the server serves alongside its users': a few per
        # second suffice (uvicorn's manager itself forwards signals every 0.5 s).
        time.sleep(0.25)


def read_health(api_url: str) -> dict | None:
    from urllib.error import URLError
    from urllib.request import urlopen

    try:
        with urlopen(f"{api_url}/health", timeout=2) as response:  # noqa: S310 (loopback)
            return json.loads(response.read())
    except (URLError, OSError, ValueError):
        return None


def workers_agree(health: dict | None, keyset: str | None, db_login: str | None) -> bool:
    if not health:
        return False
    reports = health.get("workers") or [{"keyset": health.get("keyset"), "db_login": None}]
    if len(reports) < int(health.get("workers_expected") or 1):
        return False  # a worker is (re)starting: wait for its report
    return all((keyset is None or r.get("keyset") == keyset) and (db_login is None or r.get("db_login") == db_login)
               for r in reports)


def _rotate_keys(plan, target, server, result, options, progress, clock) -> None:
    now = clock()
    values = _env_values(target.env_path)
    document = read_document(target.keys_path)
    if document is None:
        document = document_from_env(values, now)
        progress("creating the key file from the env secrets")
        write_document(target, document)
        result.steps.append(f"created {target.keys_path.name} from the env secrets")
    if options.revoke_all:
        result.new_kids = replace_all(document, now)
        result.keyset = _publish(target, document, server, "revoke-all")
        return
    result.pruned = prune(document, now)
    resume = [p for p in PURPOSES if document[p].get("pending")]
    for purpose in plan.rotate:
        if purpose not in resume:
            add_pending(document, purpose, now)
    pending = [p for p in PURPOSES if document[p].get("pending")]
    if not pending:
        if not result.pruned:
            return  # nothing changed: no write, no reload
        result.keyset = _publish(target, document, server, "prune")
        if result.pruned:
            result.steps.append(f"pruned {', '.join(result.pruned)}")
        return
    # Phase 1: verify-only everywhere first.
    progress("phase 1: adding the new key(s) verify-only")
    version = write_document(target, document)
    if not server.reload_and_confirm(version):
        for purpose in pending:
            drop_pending(document, purpose)
        write_document(target, document)
        server.reload_and_confirm()  # best effort: back to the previous keys
        raise Unreachable(f"the server did not confirm the new keys within {options.confirm_timeout:g}s: "
                          "nothing was promoted, the new keys were taken out again",
                          hint="check 'dynoctl status' and 'dynoctl logs server', then rerun")
    confirmed = "confirmed by every worker" if server.running else "written (no server running to confirm)"
    result.steps.append(f"phase 1: {', '.join(pending)} key(s) verify-only, {confirmed}")
    # Phase 2: sign with them.
    for purpose in pending:
        result.new_kids[purpose] = promote(document, purpose, clock(), _ttl(values, purpose) + options.grace_margin)
    result.keyset = _publish(target, document, server, "phase 2")
    result.steps.append(f"phase 2: promoted {', '.join(result.new_kids.values())}")
    if result.pruned:
        result.steps.append(f"pruned {', '.join(result.pruned)}")
    _record_ages(target, [ENV_SECRET_KEYS[p] for p in pending], clock())


def _publish(target, document, server, phase: str) -> str:
    version = write_document(target, document)
    if not server.reload_and_confirm(version):
        # The file is complete and safe (every key that signs was already verifiable
        # everywhere); only the confirmation is missing.
        raise PartlyFailed(f"{phase}: the key file is written but not every server worker confirmed it",
                           hint="check 'dynoctl logs server', then rerun 'dynoctl rotate-secrets --prune'")
    return version


# ------------------------------------------------------------------ database
def _admin(runtime) -> tuple[str, str]:
    url = runtime.database_url()
    return url, urlsplit(url).path.lstrip("/") or "pm_app"


def _db_interrupted(target: Target, runtime) -> bool:
    """Both logins can log in: a database rotation was cut short."""
    from dynoctl import dbroles

    values = _env_values(target.env_path)
    login = dbroles.active_login(values.get("DATABASE_URL", ""))
    if login not in dbroles.LOGINS:
        return False
    try:
        admin_url, dbname = _admin(runtime)
        with dbroles._admin_connection(admin_url, dbname) as conn:
            row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s",
                               (dbroles.other_login(login),)).fetchone()
    except DynoctlError:
        return False  # unreachable: a --db-password run will say so
    return bool(row and row[0])


def _rotate_db_login(target, runtime, server, result, progress, fresh: bool) -> None:
    from dynoctl import dbroles, envfiles

    values = _env_values(target.env_path)
    url = values["DATABASE_URL"]
    current = _db_login(values)
    admin_url, dbname = _admin(runtime)
    if not fresh or _db_interrupted(target, runtime):
        # Finish what an interrupted run began: the env file's login is the one in use.
        progress(f"finishing an interrupted database rotation: keeping {current}")
        _move_server(target, url, current, server)
        _disable(admin_url, dbname, dbroles.other_login(current))
        result.steps.append(f"finished an interrupted rotation: {dbroles.other_login(current)} disabled")
        if not fresh:
            result.db_login = current
            return
    new, password = dbroles.other_login(current), dbroles.new_password()
    progress(f"database: enabling {new} with a new password")
    dbroles.ensure_app_roles(admin_url, dbname, new, password)  # Unreachable (4) when the database is down
    new_url = dbroles.with_credentials(url, new, password)
    try:
        keep_copy(target.env_path)
        envfiles.update_env_file(target.env_path, {"DATABASE_URL": new_url})
        if _env_values(target.env_path).get("DATABASE_URL") != new_url:
            raise DynoctlError(f"{target.env_path} does not read back the new DATABASE_URL")
    except BaseException:
        # Roll back: the server never saw the new login; switch it off again.
        try:
            _disable(admin_url, dbname, new)
        except DynoctlError:
            raise PartlyFailed(f"{new} was enabled but the env file was not updated, and switching {new} off "
                               "again failed", hint="rerun 'dynoctl rotate-secrets --db-password' once the "
                               "database answers: it finishes the switch") from None
        raise
    result.steps.append(f"DATABASE_URL now logs in as {new} (env file)")
    if not _move_server(target, new_url, new, server):
        raise PartlyFailed(f"not every server worker moved to {new} in time; {current} still works",
                           hint="check 'dynoctl logs server', then rerun 'dynoctl rotate-secrets --db-password' "
                                "(it finishes the switch)")
    _wait_idle(admin_url, dbname, current)
    _disable(admin_url, dbname, current)
    result.steps.append(f"server moved to {new}; {current} disabled (NOLOGIN, sessions ended)")
    result.db_login = new
    _record_ages(target, ["DATABASE_URL"], time.time())


def _move_server(target: Target, url: str, login: str, server: _Server) -> bool:
    """Write the credential file the server re-reads, reload it, wait for every worker."""
    target.credential_path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    keep_copy(target.credential_path, keep=2)
    write_atomic(target.credential_path, json.dumps({"url": url}) + "\n", mode=target.keys_mode)
    if json.loads(target.credential_path.read_text()).get("url") != url:
        raise DynoctlError(f"{target.credential_path} does not read back what was written")
    return server.reload_and_confirm(db_login=login)


def _wait_idle(admin_url: str, dbname: str, login: str, timeout: float = 10) -> None:
    """Let requests that began on the old login finish before its sessions are ended."""
    from dynoctl import dbroles

    deadline = time.monotonic() + timeout
    with dbroles._admin_connection(admin_url, dbname) as conn:
        conn.autocommit = True
        while time.monotonic() < deadline:
            busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND state <> 'idle'",
                                (login,)).fetchone()[0]
            if not busy:
                return
            time.sleep(0.1)


def _disable(admin_url: str, dbname: str, login: str) -> None:
    from dynoctl import dbroles

    with dbroles._admin_connection(admin_url, dbname) as conn:
        dbroles.disable_login(conn, login)
        conn.commit()


def _rotate_superuser(target, runtime, result, progress) -> None:
    """New superuser password: ALTER ROLE and the env file change together (the env
    file is written inside the transaction, the old one restored if the commit fails)."""
    from psycopg import sql

    from dynoctl import dbroles, envfiles

    values = _env_values(target.env_path)
    user = values.get("POSTGRES_USER") or dbroles.DEFAULT_SUPERUSER
    password = dbroles.new_password()
    admin_url, dbname = _admin(runtime)
    progress(f"database: new password for the superuser {user}")
    with dbroles._admin_connection(admin_url, dbname) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(sql.Identifier(user),
                                                                      dbroles._password_literal(password)))
        backup = keep_copy(target.env_path)
        envfiles.update_env_file(target.env_path, {"POSTGRES_PASSWORD": password})
        try:
            if _env_values(target.env_path).get("POSTGRES_PASSWORD") != password:
                raise DynoctlError(f"{target.env_path} does not read back the new POSTGRES_PASSWORD")
            conn.commit()
        except BaseException:
            if backup is not None:
                write_atomic(target.env_path, backup.read_bytes())
            raise
    if hasattr(runtime, "forget_env"):
        runtime.forget_env()  # dynoctl's own next connections use the new password
    result.steps.append(f"superuser {user}: new password (POSTGRES_PASSWORD)")
    _record_ages(target, ["POSTGRES_PASSWORD"], time.time())


def _revoke_sessions(runtime) -> int:
    from dynoctl import dbroles

    admin_url, dbname = _admin(runtime)
    with dbroles._admin_connection(admin_url, dbname) as conn:
        count = conn.execute("UPDATE sessions SET revoked_at = now() WHERE revoked_at IS NULL").rowcount
        conn.commit()
    return count


# ------------------------------------------------------------------ secret ages
def _record_ages(target: Target, names: list[str], when: float) -> None:
    """Note when secrets of one env file changed (``FILE:NAME`` -> epoch; no values)."""
    state_dir = target.state_dir
    path = state_dir / AGES_FILENAME
    try:
        ages = json.loads(path.read_text())
    except (OSError, ValueError):
        ages = {}
    ages.update({f"{target.env_path.name}:{name}": when for name in names})
    state_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    write_atomic(path, json.dumps(ages, indent=2) + "\n")


def max_age_days(environ) -> float:
    """DYNO_SECRET_MAX_AGE_DAYS (default 90): older secrets are flagged."""
    try:
        return float(environ.get("DYNO_SECRET_MAX_AGE_DAYS") or DEFAULT_MAX_AGE_DAYS)
    except ValueError:
        return DEFAULT_MAX_AGE_DAYS


def secret_ages(layout, max_days: float = DEFAULT_MAX_AGE_DAYS, now: float | None = None) -> list[SecretAge]:
    """Each server env file's secrets with their age: from the key file (JWT keys'
    ``created_at``), rotation records, or else the env file's modification time."""
    from dynoctl import envfiles

    now = time.time() if now is None else now
    try:
        recorded = json.loads((layout.state_dir / AGES_FILENAME).read_text())
    except (OSError, ValueError):
        recorded = {}
    keys_created = _key_ages(layout.state_dir / "keys" / KEYS_FILENAME)
    ages = []
    for f in envfiles.env_files(layout):
        if not f.path.exists() or not f.name.startswith("server."):
            continue
        mtime = f.path.stat().st_mtime
        for name in _secret_names(f.path):
            when, source = recorded.get(f"{f.path.name}:{name}"), "rotation record"
            if name in keys_created:
                when, source = keys_created[name], "key file"
            if when is None:
                when, source = mtime, "file modified"
            days = (now - when) / 86400
            ages.append(SecretAge(name, str(f.path), round(days, 1),
                                  datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds"),
                                  source, days > max_days))
    return ages


def _secret_names(path: Path) -> list[str]:
    from dynoctl import envfiles

    try:
        values = envfiles.parse(path.read_text()).values
    except OSError:
        return []
    names = [k for k in values if envfiles.is_secret_key(k)]
    if unquote(urlsplit(values.get("DATABASE_URL", "")).password or ""):
        names.append("DATABASE_URL")
    return names


def _key_ages(path: Path) -> dict[str, float]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    ages = {}
    for purpose in PURPOSES:
        ring = document.get(purpose) or {}
        for key in ring.get("keys", []):
            if key.get("kid") == ring.get("signing") and key.get("created_at"):
                ages[ENV_SECRET_KEYS[purpose]] = float(key["created_at"])
    return ages


def stale_warnings(ages: list[SecretAge], max_days: float) -> list[str]:
    return [f"{a.name} in {Path(a.file).name} is {a.age_days:g} days old (over {max_days:g}): "
            "run 'dynoctl rotate-secrets'" for a in ages if a.stale]



def age_report(layout, environ) -> tuple[list[SecretAge], list[str]]:
    """What ``env check`` and ``status`` show: every secret's age, and warnings past the limit."""
    limit = max_age_days(environ)
    try:
        ages = secret_ages(layout, limit)
    except DynoctlError:
        return [], []
    return ages, stale_warnings(ages, limit)
