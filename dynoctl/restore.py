"""Restore: a dynoctl archive, a custom-format pg_dump file or a plain SQL dump, into a
NEW database, swapped in by rename only once it is complete.

Order, so that a failure or a kill at any point leaves the current database serving:
1. verify the archive's checksums (and the key) before anything else; on the local
   runtime the dump member's is taken while it is unpacked for pg_restore -j (one read
   of the archive, not two), still before anything below;
2. drop what a killed earlier restore left (``pm_app_restoring_*``), finish a swap a
   killed restore had started (the journal ``.dyno/restore-swap.json``);
3. create ``pm_app_restoring_<stamp>`` and pg_restore/psql into it (the live database
   is not touched; the server keeps serving);
4. refuse a schema revision this code does not know (newer), unless forced;
5. stage the assets beside the live ones;
6. the swap: ``ALLOW_CONNECTIONS false`` on pm_app, its sessions terminated, then both
   renames in ONE transaction (pm_app -> ``pm_app_before_restore_<stamp>``, the new
   one -> pm_app), then connections allowed on the new pm_app; the grants and
   database-level settings a rename swap would lose are copied onto the new database
   before it; assets swapped by rename right after;
7. migrate to head, wait for /ready.
The previous database stays as ``pm_app_before_restore_<stamp>`` (connections
refused): ``dynoctl restore --rollback`` swaps it back.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Callable

from dynoctl import archive, backupcrypto, pipes
from dynoctl.backup import DBNAME, connect, read_manifest
from dynoctl.backupcrypto import Keys, WrongKey
from dynoctl.errors import DynoctlError, NotRunning, Refused, UsageError

Progress = Callable[[str], None]
STAGING_PREFIX = f"{DBNAME}_restoring_"
SAFETY_PREFIX = f"{DBNAME}_before_restore_"
ROLLED_BACK_PREFIX = f"{DBNAME}_rolled_back_"
JOURNAL = "restore-swap.json"
PARALLEL_JOBS = 2
PARALLEL_LARGEST_SHARE = 0.75  # see _parallel_pays
# Session settings of the restore's connections (libpq reads PGOPTIONS). Measured
# (1 GB, this machine): maintenance_work_mem 1GB or no parallel maintenance workers
# changed nothing beyond noise; the time is the single big table's COPY.
LOAD_FAILED_HINT = "the dump did not restore; the current database is untouched"
RESTORE_ENV = {"PGOPTIONS": "-c maintenance_work_mem=256MB -c synchronous_commit=off"}


@dataclass(frozen=True)
class RestorePlan:
    source: Path
    kind: str  # "archive" | "custom" | "sql"
    created_at: str | None
    revision: str | None  # the archive's schema revision (None: unknown until restored)
    head: str | None
    known_revision: bool
    encrypted: bool
    tables: dict[str, int]
    assets: int
    database: str
    will_keep_as: str
    server_running: bool
    warnings: list[str] = field(default_factory=list)
    # False: the dump member's checksum is checked by apply() while it unpacks it (one
    # read of the archive instead of two), before anything changes.
    dump_checked: bool = True


@dataclass(frozen=True)
class RestoreResult:
    source: str
    database: str
    safety_copy: str
    revision_restored: str | None
    migrated_to: str | None
    assets_restored: int
    duration_s: float
    server_ready: bool
    secrets: SecretsRestored | None = None


# ------------------------------------------------------------------- keys & dump
def identities_for(path: Path, manifest: dict, keys: Keys) -> list[str]:
    """The identities that open this archive, checked on its check member: a wrong
    key fails here, before anything changes. [] when no key was given."""
    identities = list(keys.identities)
    with archive.open_tar(path) as tar:
        names = tar.getnames()
        if manifest["encryption"] == "age-passphrase" and archive.IDENTITY in names and keys.passphrase:
            blob = tar.extractfile(archive.IDENTITY).read()
            identities.append(backupcrypto.unwrap_identity(blob, keys.passphrase))
        if not identities:
            if keys.any:
                raise WrongKey("the given key does not open this backup", hint=backupcrypto.WRONG_KEY_HINT)
            return []
        check = tar.extractfile(archive.CHECK).read()
    if backupcrypto.decrypt_bytes(check, identities) != archive.CHECK_TEXT:
        raise WrongKey("the given key does not open this backup", hint=backupcrypto.WRONG_KEY_HINT)
    return identities


def _need_identities(path: Path, manifest: dict, keys: Keys) -> list[str]:
    if manifest["encryption"] == "none":
        return []
    identities = identities_for(path, manifest, keys)
    if not identities:
        raise UsageError(f"{path.name} is encrypted", hint=backupcrypto.WRONG_KEY_HINT)
    return identities


def _open_member(tar, name: str):
    return tar.extractfile(tar.getmember(name))


def write_dump(path: Path, manifest: dict, identities: list[str], writer: BinaryIO,
               progress: Progress | None = None) -> None:
    """The pg_dump custom-format bytes of an archive, decrypted and decompressed, to writer."""
    import zstandard

    with archive.open_tar(path) as tar:
        member = _open_member(tar, manifest["dump"]["member"])
        if progress is not None:
            total = tar.getmember(manifest["dump"]["member"]).size
            member = archive.HashingReader(member, _bytes_progress(progress, "restore", total), hashing=False)
        with zstandard.ZstdDecompressor().stream_writer(writer, closefd=False) as plain:
            if identities:
                backupcrypto.decrypt_stream(member, plain, identities)
            else:
                archive.copy(member, plain)


def _bytes_progress(progress: Progress, what: str, total: int):
    state = {"said": -1}

    def on_bytes(n: int) -> None:
        percent = n * 100 // max(total, 1)
        if percent != state["said"]:
            state["said"] = percent
            progress(f"{what} {percent}% of {total / (1 << 20):.1f} MiB")
    return on_bytes


def _write_file(path: Path, writer: BinaryIO) -> None:
    with open(path, "rb") as source:
        archive.copy(source, writer)


# ----------------------------------------------------------------------- plan
def source_kind(path: Path) -> str:
    if not path.is_file():
        raise UsageError(f"no backup at {path}", hint="see 'dynoctl backup list'")
    if archive.is_tar(path):
        return "archive"
    return "custom" if archive.is_custom_dump(path) else "sql"


def plan(runtime, layout, path: Path, keys: Keys, *, force: bool = False,
         progress: Progress = lambda _: None) -> RestorePlan:
    from dynoctl import backup, migrations

    kind = source_kind(path)
    head = migrations.head(layout.migrations_dir)
    known = {r.revision for r in migrations.history(layout.migrations_dir)}
    warnings = []
    manifest = {}
    revision = None
    later: frozenset[str] = frozenset()
    if kind == "archive":
        manifest = read_manifest(path)
        progress("verifying checksums")
        later = frozenset({manifest["dump"]["member"]}) if _unpacks(runtime, manifest) else frozenset()
        problems = backup.check_members(path, manifest, progress, later)
        if problems:
            raise DynoctlError(f"{path.name} failed verification: {problems[0]}", hint="use another backup",
                               details=problems[1:])
        _need_identities(path, manifest, keys)
        revision = manifest["database"]["alembic_revision"]
        if revision is not None and revision not in known:
            if not force:
                raise Refused(f"the backup's schema revision {revision} is unknown to this dynoctl (a newer schema?)",
                              hint="upgrade dynoctl first, or pass --force to restore it anyway")
            warnings.append(f"unknown schema revision {revision} (--force)")
    else:
        warnings.append(f"a {'custom-format pg_dump' if kind == 'custom' else 'plain SQL'} file: "
                        "its schema revision is checked once restored, assets are not restored")
    with connect(runtime.database_url(), "postgres", autocommit=True):
        pass  # the database must answer before we promise anything
    server = next((s for s in runtime.status() if s.service == "server"), None)
    stamp = _stamp()
    return RestorePlan(path, kind, manifest.get("created_at"), revision, head,
                       revision is None or revision in known, manifest.get("encryption", "none") != "none",
                       manifest.get("database", {}).get("tables", {}), len((manifest.get("assets") or {}).get("files", {})),
                       DBNAME, SAFETY_PREFIX + stamp, bool(server and server.state == "running"), warnings,
                       dump_checked=not later if kind == "archive" else True)


def _unpacks(runtime, manifest: dict) -> bool:
    """Whether apply() unpacks the archive's dump to a file for pg_restore -j: on the
    local runtime (pg_restore runs on this host), never for an encrypted archive (no
    plaintext files), and only when the parallel jobs pay for the unpacking."""
    return runtime.name == "local" and manifest.get("encryption", "none") == "none" and _parallel_pays(manifest)


def _reads_a_file(runtime, kind: str, manifest: dict) -> bool:
    """Whether pg_restore reads a file with two jobs (else the dump is streamed into
    one): a custom-format file as given, or an archive's dump when _unpacks."""
    return kind == "custom" and runtime.name == "local" or kind == "archive" and _unpacks(runtime, manifest)


def _parallel_pays(manifest: dict) -> bool:
    """pg_restore -j gives each job whole tables: when one table holds most of the data,
    the other job soon idles, and the unpacking (about a sixth of the restore's time)
    is lost. Measured (1 GB, one table 96% of it): unpacked with 2 jobs 14.1 s,
    streamed into one job 10.8-11.0 s. Archives without table sizes: unpacked."""
    sizes = manifest.get("database", {}).get("table_bytes") or {}
    total = sum(sizes.values())
    return not total or max(sizes.values()) <= total * PARALLEL_LARGEST_SHARE


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dt%H%M%S%f")


# ---------------------------------------------------------------------- apply
def apply(runtime, layout, restore_plan: RestorePlan, keys: Keys, *, project_dir: Path, force: bool = False,
          timeout: float = 120, with_secrets: bool = False, progress: Progress = lambda _: None) -> RestoreResult:
    started = time.monotonic()
    path = restore_plan.source
    manifest = read_manifest(path) if restore_plan.kind == "archive" else {}
    if with_secrets and not manifest.get("secrets"):
        raise UsageError(f"{path.name} holds no secrets", hint="restore without --with-secrets")
    identities = _need_identities(path, manifest, keys) if manifest else []
    # The dump is unpacked (and its checksum checked, when plan() left it for now)
    # before anything changes: a damaged archive fails here.
    with _prepared_dump(runtime, restore_plan, manifest, identities, progress) as dump_file:
        return _restore_swap_migrate(runtime, layout, restore_plan, manifest, identities, dump_file, keys,
                                     project_dir=project_dir, started=started, force=force, timeout=timeout,
                                     with_secrets=with_secrets, progress=progress)


def _restore_swap_migrate(runtime, layout, restore_plan: RestorePlan, manifest: dict, identities: list[str],
                          dump_file: Path | None, keys: Keys, *, project_dir: Path, started: float, force: bool,
                          timeout: float, with_secrets: bool, progress: Progress) -> RestoreResult:
    from dynoctl import migrations

    path = restore_plan.source
    state_dir = layout.state_dir
    admin_url = runtime.database_url()
    with connect(admin_url, "postgres", autocommit=True) as admin:
        repair(runtime, state_dir, project_dir, admin)
        _drop_leftovers(admin)
        _remove_staged_assets(runtime, project_dir)
        incoming = STAGING_PREFIX + restore_plan.will_keep_as.removeprefix(SAFETY_PREFIX)
        _create_like(admin, DBNAME, incoming)
        # The assets are staged while pg_restore runs (it works on the server; this is
        # file copying here): both must be done, and succeed, before the swap.
        stager = _Background(stage_assets, runtime, project_dir, path, manifest, identities, incoming,
                             lambda _: None) if manifest.get("assets") else None
        try:
            progress(f"restoring into {incoming}")
            try:
                _load(runtime, restore_plan.kind, path, manifest, identities, incoming, progress, dump_file)
            except BaseException:
                if stager:
                    stager.join()  # its staging tree is removed below; the load's error is the one to tell
                raise
            staged = stager.result() if stager else None
            revision = _revision_of(admin_url, incoming)
            known = {r.revision for r in migrations.history(layout.migrations_dir)}
            if revision is not None and revision not in known and not force:
                raise Refused(f"the restored schema revision {revision} is unknown to this dynoctl (a newer schema?)",
                              hint="upgrade dynoctl first, or pass --force")
            _copy_database_settings(admin, DBNAME, incoming)
            grant_app_privileges(admin_url, incoming)
        except BaseException:
            _drop(admin, incoming)
            _remove_staged_assets(runtime, project_dir)
            raise
        progress("swapping the restored database in")
        journal = {"phase": "swap", "incoming": incoming, "retired": restore_plan.will_keep_as,
                   "assets_staged": staged, "stamp": restore_plan.will_keep_as.removeprefix(SAFETY_PREFIX)}
        _write_journal(state_dir, journal)
        swap(admin, DBNAME, incoming, restore_plan.will_keep_as)
        if staged:
            swap_assets(runtime, project_dir, journal["stamp"])
        _clear_journal(state_dir)
    migrated_to = revision
    # A forced unknown revision cannot be migrated from; one already at head needs no
    # alembic run (which costs its start-up, about a second).
    if revision is None or (revision in known and revision != restore_plan.head):
        progress("migrating to head")
        try:
            migrated_to = migrations.upgrade(admin_url, layout.migrations_dir).after
        except DynoctlError as exc:
            raise DynoctlError(f"restored, but migrating it to head failed: {exc.message}",
                               hint=f"'dynoctl restore --rollback' puts the previous database back "
                                    f"({restore_plan.will_keep_as})") from exc
    secrets = restore_secrets(runtime, layout, path, manifest, keys) if with_secrets else None
    ready = _wait_ready(runtime, timeout) if restore_plan.server_running else False
    return RestoreResult(str(path), DBNAME, restore_plan.will_keep_as, revision, migrated_to,
                         len(manifest.get("assets", {}).get("files", {})) if manifest.get("assets") else 0,
                         round(time.monotonic() - started, 3), ready, secrets)


class _Background(threading.Thread):
    """fn(*args) in a thread; result() waits for it and returns its value or raises its error."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self._fn, self._args = fn, args
        self._value = self._error = None
        self.start()

    def run(self) -> None:
        try:
            self._value = self._fn(*self._args)
        except BaseException as exc:  # re-raised in the caller's thread
            self._error = exc

    def result(self):
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


def _wait_ready(runtime, timeout: float) -> bool:
    from dynoctl import stack

    stack.wait_for_server(runtime, time.monotonic() + timeout)
    return True


def _load(runtime, kind: str, path: Path, manifest: dict, identities: list[str], dbname: str,
          progress: Progress | None = None, dump_file: Path | None = None) -> None:
    """Into dbname. ``dump_file``: the custom-format dump already on this host (from
    _prepared_dump), which pg_restore reads with two jobs."""
    if kind == "sql":
        argv = ["psql", "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--dbname", dbname]
        code = pipes.run(runtime, "db", argv, feed=lambda w: _write_file(path, w), sink=lambda r: None,
                         env=RESTORE_ENV)
        pipes.check(code, "psql", hint="the SQL dump did not apply; the current database is untouched")
        return
    if dump_file is None and _reads_a_file(runtime, kind, manifest):
        with _dump_file(kind, path, manifest, progress) as unpacked:
            return _load(runtime, kind, path, manifest, identities, dbname, progress, unpacked) \
                if unpacked is not None else _stream(runtime, kind, path, manifest, identities, dbname, progress)
    if dump_file is not None:
        # pg_restore runs on this host: two jobs on a file (COPY and index builds of
        # two tables at once; -j refuses a pipe).
        if progress:
            progress(f"pg_restore --jobs={PARALLEL_JOBS}")
        code = runtime.exec("db", [*_pg_restore(dbname), f"--jobs={PARALLEL_JOBS}", str(dump_file)], env=RESTORE_ENV)
        return pipes.check(code, "pg_restore", hint=LOAD_FAILED_HINT)
    _stream(runtime, kind, path, manifest, identities, dbname, progress)


def _pg_restore(dbname: str) -> list[str]:
    # --no-owner/--no-privileges: the roles of the machine the dump came from may not
    # exist here; ownership goes to the restoring superuser and grants are re-applied.
    return ["pg_restore", "--exit-on-error", "--no-owner", "--no-privileges", "--dbname", dbname]


def _stream(runtime, kind: str, path: Path, manifest: dict, identities: list[str], dbname: str,
            progress: Progress | None) -> None:
    """pg_restore reading the dump from its stdin (one job): docker, encrypted archives,
    an archive with one table holding most of its data, or no room to unpack."""
    feed = (lambda w: _write_file(path, w)) if kind == "custom" else \
        (lambda w: write_dump(path, manifest, identities, w, progress))
    code = pipes.run(runtime, "db", _pg_restore(dbname), feed=feed, env=RESTORE_ENV)
    pipes.check(code, "pg_restore", hint=LOAD_FAILED_HINT)


@contextmanager
def _prepared_dump(runtime, restore_plan: RestorePlan, manifest: dict, identities: list[str],
                   progress: Progress):
    """The dump file pg_restore -j reads (None: pg_restore streams it), with the dump
    member's checksum checked if plan() left it for now. An unencrypted archive's dump
    is unpacked beside it (it is plaintext there already); an encrypted one never is."""
    kind, path = restore_plan.kind, restore_plan.source
    if not _reads_a_file(runtime, kind, manifest):
        if not restore_plan.dump_checked:
            _check_dump_member(path, manifest, progress)
        yield None
        return
    with _dump_file(kind, path, manifest, progress, check=not restore_plan.dump_checked) as dump_file:
        yield dump_file


def _dump_damaged(manifest: dict) -> DynoctlError:
    return DynoctlError(f"{manifest['dump']['member']}: checksum mismatch (the member is damaged)",
                        hint="use another backup; nothing was changed")


def _expected_dump(manifest: dict) -> tuple[int, str]:
    want = next(m for m in manifest["members"] if m["name"] == manifest["dump"]["member"])
    return want["size"], want["sha256"]


def _check_dump_member(path: Path, manifest: dict, progress: Progress) -> None:
    progress(f"checksum {manifest['dump']['member']}")
    with archive.open_tar(path) as tar:
        found = archive.sha256_of(_open_member(tar, manifest["dump"]["member"]))
    if found != _expected_dump(manifest):
        raise _dump_damaged(manifest)


@contextmanager
def _dump_file(kind: str, path: Path, manifest: dict, progress: Progress | None = None, check: bool = False):
    """A custom-format file pg_restore -j can read: the given file, or the archive's
    dump unpacked beside it (0600, removed afterwards); None when there is no room.
    ``check``: the dump member's sha256 is computed while it is unpacked and compared
    with the manifest's before the file is handed out."""
    if kind == "custom":
        yield path
        return
    needed = manifest["dump"].get("uncompressed_bytes", 0) + (64 << 20)
    if shutil.disk_usage(path.parent).free < needed or not os.access(path.parent, os.W_OK):
        if check:
            _check_dump_member(path, manifest, progress or (lambda _: None))
        yield None
        return
    target = path.parent / f".{path.name}.pgdump.tmp"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            found = _unpack_hashing(path, manifest, out, progress)
        if check and found != _expected_dump(manifest):
            raise _dump_damaged(manifest)
        yield target
    finally:
        target.unlink(missing_ok=True)


def _unpack_hashing(path: Path, manifest: dict, out: BinaryIO, progress: Progress | None) -> tuple[int, str]:
    """Unpack the (unencrypted) dump member to out; (size, sha256) of its stored bytes.
    A damaged member can also break the decompression: its digest then comes from
    the rest of the member, so the caller reports a checksum mismatch, not zstd's error."""
    import zstandard

    with archive.open_tar(path) as tar:
        info = tar.getmember(manifest["dump"]["member"])
        on_bytes = _bytes_progress(progress, "restore", info.size) if progress else None
        member = archive.HashingReader(tar.extractfile(info), on_bytes)
        try:
            with zstandard.ZstdDecompressor().stream_writer(out, closefd=False) as plain:
                archive.copy(member, plain)
        except zstandard.ZstdError as exc:
            archive.copy(member, _Discard())
            if (member.size, member.hash.hexdigest()) == _expected_dump(manifest):
                raise DynoctlError(f"{info.name} does not decompress: {exc}",
                                   hint="the backup was damaged before its checksums were taken; use another") from exc
        return member.size, member.hash.hexdigest()


class _Discard:
    def write(self, data) -> int:
        return len(data)


def _revision_of(admin_url: str, dbname: str) -> str | None:
    with connect(admin_url, dbname, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()[0]:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None


# ----------------------------------------------------------------- databases
def _ident(name: str):
    from psycopg import sql

    return sql.Identifier(name)


def _sql(text: str, *names: str):
    from psycopg import sql

    return sql.SQL(text).format(*[_ident(n) for n in names])


def _exists(admin, name: str) -> bool:
    return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def _create_like(admin, template_of: str, name: str) -> None:
    """An empty database with the owner, encoding and locale of ``template_of``."""
    from psycopg import sql

    row = admin.execute("SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype"
                        " FROM pg_database WHERE datname = %s", (template_of,)).fetchone()
    if row is None:
        admin.execute(_sql("CREATE DATABASE {} TEMPLATE template0", name))
        return
    admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
        _ident(name), _ident(row[0]), sql.Literal(row[1]), sql.Literal(row[2]), sql.Literal(row[3])))


def _drop(admin, name: str) -> None:
    try:
        admin.execute(_sql("DROP DATABASE IF EXISTS {} WITH (FORCE)", name))
    except Exception:  # noqa: BLE001 - a leftover is dropped by the next restore
        pass


def _drop_leftovers(admin) -> None:
    """Databases a killed restore or restore test was filling: never in use by anyone."""
    for (name,) in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s OR datname LIKE %s",
                                 (STAGING_PREFIX + "%", f"{DBNAME}_verify_%")).fetchall():
        _drop(admin, name)


def _copy_database_settings(admin, source: str, target: str) -> None:
    """What a rename swap would lose: per-database settings (ALTER DATABASE ... SET,
    ALTER ROLE ... IN DATABASE ... SET) and database-level grants (CONNECT, TEMP, CREATE)."""
    from psycopg import sql

    rows = admin.execute("SELECT coalesce(pg_get_userbyid(NULLIF(s.setrole, 0)), ''), s.setconfig"
                         " FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
                         " WHERE d.datname = %s", (source,)).fetchall()
    for role, config in rows:
        for item in config:
            key, _, value = item.partition("=")
            target_sql = sql.SQL("ALTER DATABASE {} SET {} = {}") if not role else \
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}")
            parts = [_ident(target), sql.Identifier(key), sql.Literal(value)]
            admin.execute(target_sql.format(*parts) if not role else target_sql.format(_ident(role), *parts))
    acl = admin.execute("SELECT datacl::text[] FROM pg_database WHERE datname = %s", (source,)).fetchone()
    if not acl or acl[0] is None:
        return  # default privileges: the new database has them too
    admin.execute(_sql("REVOKE ALL ON DATABASE {} FROM PUBLIC", target))
    letters = {"C": "CREATE", "T": "TEMPORARY", "c": "CONNECT"}
    for item in acl[0]:
        grantee, _, rest = item.partition("=")
        privileges = [letters[ch] for ch in rest.split("/")[0] if ch in letters]
        if not privileges:
            continue
        who = sql.SQL("PUBLIC") if grantee == "" else sql.Identifier(grantee.strip('"'))
        admin.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
            sql.SQL(", ").join(sql.SQL(p) for p in privileges), _ident(target), who))


def grant_app_privileges(admin_url: str, dbname: str) -> None:
    """Re-apply the server role's grants inside the restored database.

    CONTRACT-DBROLES: ``dynoctl.dbroles.grant_app_privileges(conn)`` owns this. Until
    that module is merged on this branch the call is skipped (single call site: the
    lead connects it by merging security-infra)."""
    try:
        from dynoctl import dbroles  # type: ignore[attr-defined]
    except ImportError:
        return
    with connect(admin_url, dbname) as conn:
        dbroles.grant_app_privileges(conn)
        conn.commit()


def _terminate(admin, name: str, wait: float = 10) -> None:
    deadline = time.monotonic() + wait
    while True:
        left = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                             " WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchone()[0]
        if not left:
            return
        if time.monotonic() > deadline:
            raise DynoctlError(f"sessions on {name} did not end", hint="try again")
        time.sleep(0.05)


def swap(admin, current: str, incoming: str, retired: str) -> None:
    """incoming becomes current; current is kept as retired (connections refused)."""
    admin.execute(_sql("ALTER DATABASE {} ALLOW_CONNECTIONS false", current))
    try:
        _terminate(admin, current)
        _terminate(admin, incoming)
        with admin.transaction():
            admin.execute(_sql("ALTER DATABASE {} RENAME TO {}", current, retired))
            admin.execute(_sql("ALTER DATABASE {} RENAME TO {}", incoming, current))
    except BaseException:
        if _exists(admin, current):
            admin.execute(_sql("ALTER DATABASE {} ALLOW_CONNECTIONS true", current))
        raise
    admin.execute(_sql("ALTER DATABASE {} ALLOW_CONNECTIONS true", current))


# -------------------------------------------------------------------- journal
def _journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL


def _write_journal(state_dir: Path, data: dict) -> None:
    from dynoctl.atomicfile import write_atomic

    state_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    write_atomic(_journal_path(state_dir), json.dumps(data))


def _clear_journal(state_dir: Path) -> None:
    _journal_path(state_dir).unlink(missing_ok=True)


def repair(runtime, state_dir: Path, project_dir: Path, admin) -> list[str]:
    """Finish a swap that a killed restore or rollback had started: pm_app accepts
    connections again and the staged assets are in place. Returns what it did."""
    path = _journal_path(state_dir)
    if not path.exists():
        return []
    journal = json.loads(path.read_text())
    done = []
    if _exists(admin, DBNAME):
        admin.execute(_sql("ALTER DATABASE {} ALLOW_CONNECTIONS true", DBNAME))
        done.append("pm_app accepts connections again")
        if journal.get("assets_staged") and not _exists(admin, journal["incoming"]):
            # The database swap committed: the assets must follow it.
            swap_assets(runtime, project_dir, journal["stamp"], resume=True)
            done.append("assets swap completed")
    _clear_journal(state_dir)
    return done


# --------------------------------------------------------------------- assets
def _asset_names(stamp: str) -> tuple[str, str]:
    return f".restoring-{stamp}", f".before-restore-{stamp}"


def stage_assets(runtime, project_dir: Path, path: Path, manifest: dict, identities: list[str], dbname: str,
                 progress: Progress) -> bool:
    """Every asset file of the archive under a staging directory beside the live ones."""
    stamp = dbname.removeprefix(STAGING_PREFIX)
    staging_name, _ = _asset_names(stamp)
    files = manifest["assets"]["files"]
    by_sha: dict[str, list[str]] = {}
    for storage_path, sha in files.items():
        by_sha.setdefault(sha, []).append(storage_path)
    if runtime.name == "docker":
        return _stage_in_container(runtime, path, by_sha, identities, staging_name, progress)
    from dynoctl.backup import assets_dir

    live = assets_dir(runtime, project_dir)
    staging = live.parent / f"{live.name}{staging_name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, mode=0o700)
    count = 0
    for sha, stream in _asset_members(path, identities):
        paths = by_sha.get(sha, [])
        if not paths:
            continue
        first = staging / paths[0]
        first.parent.mkdir(exist_ok=True)
        with open(first, "wb") as out:
            _copy_member(stream, out, identities)
        for other in paths[1:]:
            (staging / other).parent.mkdir(exist_ok=True)
            os.link(first, staging / other)
        count += len(paths)
        progress(f"assets {count}/{len(files)}")
    _owned_like(staging, live)
    return True


def _owned_like(staging: Path, live: Path) -> None:
    """The staged tree gets the live directory's owner, directories 0700 and files 0600
    (the server may run as its own account: it must read and write what it gets)."""
    import stat

    ref = live if live.exists() else live.parent
    uid, gid = ref.stat().st_uid, ref.stat().st_gid
    for root, dirs, names in os.walk(staging):
        for name in [*dirs, *names]:
            path = Path(root) / name
            os.chown(path, uid, gid, follow_symlinks=False)
            os.chmod(path, 0o700 if stat.S_ISDIR(path.lstat().st_mode) else 0o600)
    os.chown(staging, uid, gid)
    os.chmod(staging, 0o700)


def _asset_members(path: Path, identities: list[str]):
    with archive.open_tar(path) as tar:
        for info in archive.members(tar):
            if info.name.startswith(archive.ASSETS):
                sha = info.name[len(archive.ASSETS):].removesuffix(archive.AGE)
                yield sha, tar.extractfile(info)


def _copy_member(stream, out: BinaryIO, identities: list[str]) -> None:
    if identities:
        backupcrypto.decrypt_stream(stream, out, identities)
    else:
        archive.copy(stream, out)


CONTAINER_ASSETS = "/data/assets"


def _stage_in_container(runtime, path: Path, by_sha: dict[str, list[str]], identities: list[str],
                        staging_name: str, progress: Progress) -> bool:
    """The staged tree streamed as a tar into the server container's volume."""
    import tarfile
    import tempfile

    staging = f"{CONTAINER_ASSETS}/{staging_name}"
    code = runtime.exec("server", ["sh", "-c", f'rm -rf "{staging}" && mkdir -p "{staging}"'])
    pipes.check(code, "mkdir in the server container")

    def feed(writer):
        with tarfile.open(fileobj=writer, mode="w|") as out:
            for sha, stream in _asset_members(path, identities):
                paths = by_sha.get(sha, [])
                if not paths:
                    continue
                # Plain bytes are needed with their size up front: decrypted ones go
                # through a private spooled buffer (memory up to 8 MiB, then a 0600 file).
                with tempfile.SpooledTemporaryFile(8 << 20) as plain:
                    _copy_member(stream, plain, identities)
                    size = plain.tell()
                    for storage_path in paths:
                        plain.seek(0)
                        info = tarfile.TarInfo(storage_path)
                        info.size, info.mode = size, 0o640
                        out.addfile(info, plain)

    code = pipes.run(runtime, "server", ["tar", "-C", staging, "-xf", "-"], feed=feed)
    pipes.check(code, "tar in the server container")
    return True


def _remove_staged_assets(runtime, project_dir: Path) -> None:
    """Staging trees of failed or killed restores (we hold the project lock: none runs)."""
    if runtime.name == "docker":
        try:
            runtime.exec("server", ["sh", "-c", f"rm -rf {CONTAINER_ASSETS}/.restoring-*"])
        except DynoctlError:
            pass  # no server container: nothing was staged in it
        return
    from dynoctl.backup import assets_dir

    live = assets_dir(runtime, project_dir)
    for staging in live.parent.glob(f"{live.name}.restoring-*"):
        shutil.rmtree(staging, ignore_errors=True)


def swap_assets(runtime, project_dir: Path, stamp: str, resume: bool = False) -> None:
    staging_name, retired_name = _asset_names(stamp)
    if runtime.name == "docker":
        script = (f'cd {CONTAINER_ASSETS} && [ -d "{staging_name}" ] || exit 0; '
                  f'mkdir -p "{retired_name}" && for f in * ; do [ -e "$f" ] && mv "$f" "{retired_name}/"; done; '
                  f'for f in "{staging_name}"/* ; do [ -e "$f" ] && mv "$f" . ; done; rmdir "{staging_name}"')
        pipes.check(runtime.exec("server", ["sh", "-c", script]), "the assets swap in the server container")
        return
    from dynoctl.backup import assets_dir

    live = assets_dir(runtime, project_dir)
    staging = live.parent / f"{live.name}{staging_name}"
    retired = live.parent / f"{live.name}{retired_name}"
    if not staging.exists():
        return
    if live.exists() and not (resume and retired.exists()):
        os.rename(live, retired)
    elif live.exists():
        shutil.rmtree(live)  # a partial state from a killed swap: the staged tree wins
    os.rename(staging, live)


# -------------------------------------------------------------------- secrets
@dataclass(frozen=True)
class SecretsRestored:
    key_file: str | None  # the JWT key file put in place (its previous version kept beside it)
    kept_copy: str | None
    env_files_for_review: list[str]  # written as NAME.from-backup, never applied


def restore_secrets(runtime, layout, path: Path, manifest: dict, keys: Keys) -> SecretsRestored:
    """The archive's JWT key file replaces the current one (a copy kept), so tokens the
    old machine signed verify here; the server re-reads it (SIGHUP). The env files are
    written beside the live ones as ``NAME.from-backup`` (0600) for the user to compare:
    applying them would change this stack's database passwords under it."""
    from dynoctl.atomicfile import keep_copy, write_atomic

    if not manifest.get("secrets"):
        raise UsageError(f"{path.name} holds no secrets", hint="it was made without --with-secrets")
    identities = _need_identities(path, manifest, keys)
    key_file = kept = None
    review = []
    with archive.open_tar(path) as tar:
        for item in manifest["secrets"]:
            data = backupcrypto.decrypt_bytes(tar.extractfile(item["member"]).read(), identities)
            if item["kind"] == "jwt-keys":
                target = layout.state_dir / "keys" / item["file"]
                target.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
                mode = target.stat().st_mode & 0o777 if target.exists() else 0o640
                copy = keep_copy(target)
                kept = str(copy) if copy else None
                write_atomic(target, data, mode=mode)
                key_file = str(target)
            else:
                target = layout.env_dir / f"{item['file']}.from-backup"
                write_atomic(target, data, mode=0o600)
                review.append(str(target))
    if key_file:
        try:
            runtime.reload("server")
        except NotRunning:
            pass
    return SecretsRestored(key_file, kept, review)


# ---------------------------------------------------------------- restore test
def restore_test(runtime, path: Path, manifest: dict, identities: list[str], progress: Progress) -> dict:
    """Restore into a scratch database, count each table, drop it."""
    from psycopg import sql

    name = f"{DBNAME}_verify_{_stamp()}"
    admin_url = runtime.database_url()
    with connect(admin_url, "postgres", autocommit=True) as admin:
        _create_like(admin, DBNAME, name)
        try:
            progress(f"restore test into {name}")
            _load(runtime, "archive", path, manifest, identities, name, progress)
            counts = {}
            with connect(admin_url, name, autocommit=True) as conn:
                for table, expected in manifest["database"]["tables"].items():
                    found = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                        sql.Identifier("public", table))).fetchone()[0]
                    counts[table] = {"expected": expected, "restored": found}
            return counts
        finally:
            _drop(admin, name)


# -------------------------------------------------------------------- rollback
@dataclass(frozen=True)
class RollbackPlan:
    safety_copy: str
    current_kept_as: str
    assets: bool


def plan_rollback(runtime, project_dir: Path) -> RollbackPlan:
    with connect(runtime.database_url(), "postgres", autocommit=True) as admin:
        rows = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname DESC",
                             (SAFETY_PREFIX + "%",)).fetchall()
    if not rows:
        raise Refused("there is no safety copy to roll back to", hint="a restore keeps one until 'dynoctl backup prune' drops it")
    safety = rows[0][0]
    stamp = safety.removeprefix(SAFETY_PREFIX)
    assets = False
    if runtime.name != "docker":
        from dynoctl.backup import assets_dir

        live = assets_dir(runtime, project_dir)
        assets = (live.parent / f"{live.name}{_asset_names(stamp)[1]}").exists()
    return RollbackPlan(safety, ROLLED_BACK_PREFIX + _stamp(), assets)


def rollback(runtime, layout, project_dir: Path, rollback_plan: RollbackPlan, timeout: float = 120) -> RollbackPlan:
    admin_url = runtime.database_url()
    with connect(admin_url, "postgres", autocommit=True) as admin:
        repair(runtime, layout.state_dir, project_dir, admin)
        if not _exists(admin, rollback_plan.safety_copy):
            raise Refused(f"the safety copy {rollback_plan.safety_copy} is gone", hint="nothing was changed")
        swap(admin, DBNAME, rollback_plan.safety_copy, rollback_plan.current_kept_as)
    stamp = rollback_plan.safety_copy.removeprefix(SAFETY_PREFIX)
    if rollback_plan.assets:
        from dynoctl.backup import assets_dir

        live = assets_dir(runtime, project_dir)
        kept = live.parent / f"{live.name}{_asset_names(stamp)[1]}"
        os.rename(live, live.parent / f"{live.name}.rolled-back-{_stamp()}")
        os.rename(kept, live)
    server = next((s for s in runtime.status() if s.service == "server"), None)
    if server and server.state == "running":
        _wait_ready(runtime, timeout)
    return rollback_plan


def require_db(runtime) -> None:
    db = next((s for s in runtime.status() if s.service == "db"), None)
    if db is None or db.state != "running":
        raise NotRunning("the database is not running", hint="start the stack with 'dynoctl up'")


# -------------------------------------------------------------- kept copies
# A restore keeps the database it replaced (and its asset tree) as the safety copy; a
# rollback keeps the one it swapped out. They stay until pruned: `backup prune` drops
# those older than its --keep-safety-days, so repeated restores do not fill the disk.
_KEPT_DATABASES = (SAFETY_PREFIX, ROLLED_BACK_PREFIX)
_KEPT_ASSET_TREES = (".before-restore-", ".rolled-back-")


@dataclass(frozen=True)
class KeptCopy:
    kind: str  # "database" | "assets"
    name: str
    created_at: datetime
    size: int | None  # bytes (databases)


def kept_copies(runtime, project_dir: Path) -> list[KeptCopy]:
    """The databases and asset trees restores and rollbacks kept, newest first."""
    with connect(runtime.database_url(), "postgres", autocommit=True) as admin:
        rows = admin.execute("SELECT datname, pg_database_size(datname) FROM pg_database"
                             " WHERE datname LIKE %s OR datname LIKE %s",
                             tuple(prefix + "%" for prefix in _KEPT_DATABASES)).fetchall()
    copies = [KeptCopy("database", name, _stamp_time(name, _KEPT_DATABASES), size) for name, size in rows]
    copies += [KeptCopy("assets", name, _stamp_time(name, _KEPT_ASSET_TREES), None)
               for name in _kept_asset_trees(runtime, project_dir)]
    return sorted((c for c in copies if c.created_at), key=lambda c: c.created_at, reverse=True)


def expired_kept_copies(runtime, project_dir: Path, keep_days: float) -> list[KeptCopy]:
    cutoff = datetime.now(timezone.utc) - timedelta(days=keep_days)
    return [c for c in kept_copies(runtime, project_dir) if c.created_at < cutoff]


def drop_kept_copy(runtime, project_dir: Path, copy: KeptCopy) -> None:
    if copy.kind == "database":
        with connect(runtime.database_url(), "postgres", autocommit=True) as admin:
            admin.execute(_sql("DROP DATABASE IF EXISTS {} WITH (FORCE)", copy.name))
    elif runtime.name == "docker":
        pipes.check(runtime.exec("server", ["rm", "-rf", "--", f"{CONTAINER_ASSETS}/{copy.name}"]),
                    f"removing {copy.name} in the server container")
    else:
        from dynoctl.backup import assets_dir

        live = assets_dir(runtime, project_dir)
        shutil.rmtree(live.parent / f"{live.name}{copy.name}")


def _kept_asset_trees(runtime, project_dir: Path) -> list[str]:
    """Names as suffixes of the live tree (local: beside it; docker: dot-dirs inside it)."""
    if runtime.name == "docker":
        import io

        out = io.BytesIO()
        if runtime.exec("server", ["sh", "-c", f"cd {CONTAINER_ASSETS} && ls -1da .before-restore-* .rolled-back-*"
                                   " 2>/dev/null; true"], stdout=out) != 0:
            return []
        return [line for line in out.getvalue().decode().split() if line.startswith(_KEPT_ASSET_TREES)]
    from dynoctl.backup import assets_dir

    live = assets_dir(runtime, project_dir)
    return [p.name.removeprefix(live.name) for prefix in _KEPT_ASSET_TREES
            for p in live.parent.glob(f"{live.name}{prefix}*")]


def _stamp_time(name: str, prefixes: tuple[str, ...]) -> datetime | None:
    stamp = next((name.removeprefix(p) for p in prefixes if name.startswith(p)), "")
    try:
        return datetime.strptime(stamp, "%Y%m%dt%H%M%S%f").replace(tzinfo=timezone.utc)
    except ValueError:
        return None  # not one of ours: never touched
