"""Backups: make one archive (dynoctl.archive) per run, list, verify and prune them.

A backup reads the database in one snapshot: a REPEATABLE READ transaction exports
its snapshot, pg_dump runs in it (``--snapshot``) and the row counts and the asset
list are read in it too, so the manifest describes exactly what the dump holds. The
dump is ``pg_dump -Fc -Z0`` (its gzip on one core is the whole cost of a default
dump) compressed by zstd inside dynoctl on ``threads`` cores; pg_dump runs through
``Runtime.exec``, so on the docker runtime it is the db container's own (its version
is the server's). A backup never blocks the live app: it takes no lock in the
database beyond pg_dump's ACCESS SHARE, and it runs in the background
(dynoctl.priority): nice 19 for dynoctl, pg_dump and the server processes reading for
it, and half the CPUs while anything else is busy.

The archive is written as ``.NAME.tmp`` (0600) in the backup directory, checked by
reading it back, then renamed: a failure or kill leaves at most that temp file,
which the next backup removes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from dynoctl import archive, backupcrypto, pipes, priority
from dynoctl.backupcrypto import Keys
from dynoctl.errors import DynoctlError, Refused, Unreachable, UsageError

FORMAT = "dyno-backup/1"
PREFIX = "dyno-"
SUFFIX = ".tar"
DBNAME = "pm_app"
Progress = Callable[[str], None]
FREE_SPACE_MARGIN = 64 << 20


@dataclass(frozen=True)
class BackupOptions:
    output_dir: Path
    assets: bool = True
    secrets: bool = False
    keys: Keys = Keys()
    zstd_level: int = 3  # 1 is faster but about as large as pg_dump's gzip; 3 is 0.74x of it
    zstd_threads: int | None = None  # None: default_zstd_threads()
    background: bool = True  # nice 19, and half the CPUs while others are busy (dynoctl.priority)


@dataclass(frozen=True)
class BackupResult:
    name: str
    path: Path
    size: int
    created_at: str
    duration_s: float
    revision: str | None
    tables: int
    rows: int
    dump_bytes: int  # pg_dump's output before compression
    assets: int
    distinct_assets: int
    missing_assets: list[str]
    encrypted: bool
    secrets: bool


# ------------------------------------------------------------------ helpers
def default_dir(state_dir: Path, environ: dict[str, str]) -> Path:
    value = environ.get("DYNO_BACKUP_DIR")
    return Path(value).expanduser() if value else state_dir / "backups"


def psycopg_url(database_url: str, dbname: str | None = None) -> str:
    from urllib.parse import urlsplit, urlunsplit

    from dynoserver.dburl import sqlalchemy_url

    parts = urlsplit(sqlalchemy_url(database_url))
    path = f"/{dbname}" if dbname else parts.path
    return urlunsplit(("postgresql", parts.netloc, path, parts.query, ""))


def connect(database_url: str, dbname: str | None = None, autocommit: bool = False):
    import psycopg

    from dynoctl.db import address

    url = psycopg_url(database_url, dbname)
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=5)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Unreachable(f"the database at {address(url)} does not accept connections: {first}",
                          hint="start the stack with 'dynoctl up'") from None


def default_zstd_threads() -> int:
    """Every CPU this process may use: while the app is busy the governor
    (dynoctl.priority) keeps the whole backup on half of them anyway. Measured on 2
    cores (bench/backup.py, 1 GB): 2 threads 5.5 s against 1 thread 6.1-6.7 s with no
    load; under load both confined to one core, the API's p99 about 1.1x either way."""
    return max(1, len(os.sched_getaffinity(0)))


def read_manifest(path: Path) -> dict:
    """The manifest of an archive; a missing or damaged archive is a clear error."""
    import tarfile

    if not path.is_file():
        raise UsageError(f"no backup at {path}", hint="see 'dynoctl backup list'")
    try:
        with archive.open_tar(path) as tar:
            member = tar.getmember(archive.MANIFEST)
            return json.loads(tar.extractfile(member).read())
    except KeyError:
        raise DynoctlError(f"{path.name} has no manifest: it is truncated or not a dynoctl backup",
                           hint="use another backup") from None
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise DynoctlError(f"{path.name} is damaged or truncated: {exc}", hint="use another backup") from None


def resolve(name: str, directory: Path) -> Path:
    """A backup given by name (in the backup directory) or by path."""
    path = Path(name).expanduser()
    if path.exists() or os.sep in name:
        return path
    candidate = directory / name
    return candidate if candidate.exists() or name.endswith(SUFFIX) else directory / f"{name}{SUFFIX}"


# ------------------------------------------------------------------- making one
def make(runtime, layout, options: BackupOptions, *, project_dir: Path,
         progress: Progress = lambda _: None) -> BackupResult:
    if options.secrets and not options.keys.any:
        raise UsageError("--with-secrets requires encryption",
                         hint="add --recipient, --identity or --passphrase-file (or DYNO_BACKUP_PASSPHRASE)")
    started = time.monotonic()
    with _background(options) as governor:
        manifest, facts, final = _make(runtime, layout, options, project_dir, progress, governor, started)
    assets = manifest.get("assets", {})
    return BackupResult(final.name, final, final.stat().st_size, manifest["created_at"], manifest["duration_s"],
                        facts["revision"], len(facts["tables"]), sum(facts["tables"].values()),
                        manifest["dump"]["uncompressed_bytes"], len(assets.get("files", {})),
                        assets.get("distinct", 0), assets.get("missing", []), manifest["encryption"] != "none",
                        bool(manifest.get("secrets")))


def _make(runtime, layout, options: BackupOptions, project_dir: Path, progress: Progress, governor,
          started: float) -> tuple[dict, dict, Path]:
    out_dir = _prepare_dir(options.output_dir)
    with connect(runtime.database_url()) as conn:
        facts = _database_facts(conn)
        _check_free_space(out_dir, facts["size_bytes"] + (facts["assets_bytes"] if options.assets else 0))
        created = datetime.now(timezone.utc)
        name = f"{PREFIX}{created:%Y%m%dT%H%M%S}{created.microsecond // 1000:03d}Z{SUFFIX}"
        final = out_dir / name
        tmp = out_dir / f".{name}.tmp"
        try:
            manifest = _write(runtime, layout, conn, facts, tmp, options, created, project_dir, progress, governor)
            manifest["duration_s"] = round(time.monotonic() - started, 3)
            progress("checking what was written")
            _rewrite_manifest_check(tmp, manifest)
            os.replace(tmp, final)
            from dynoctl.atomicfile import fsync_dir

            fsync_dir(out_dir)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return manifest, facts, final


@contextmanager
def _background(options: BackupOptions):
    """The backup's priority (dynoctl.priority): nice 19, and a governor that keeps it
    to half the CPUs while the app (or anything else) is busy."""
    if not options.background:
        yield None
        return
    priority.lower()
    with priority.Governor() as governor:
        yield governor


def _prepare_dir(directory: Path) -> Path:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise Refused(f"cannot create the backup directory {directory}: {exc.strerror}",
                      hint="choose another with --output or DYNO_BACKUP_DIR") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise Refused(f"the backup directory {directory} is not writable",
                      hint="fix its permissions, or choose another with --output or DYNO_BACKUP_DIR")
    # Left by a killed backup or restore (we hold the project lock: none is running).
    for pattern in (f".{PREFIX}*{SUFFIX}.tmp", f".{PREFIX}*{SUFFIX}.pgdump.tmp"):
        for stale in directory.glob(pattern):
            stale.unlink(missing_ok=True)
    return directory


def _check_free_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed + FREE_SPACE_MARGIN:
        raise Refused(f"not enough free space in {directory}: {_mib(free)} free, up to {_mib(needed)} needed "
                      "(the database's size plus its assets)", hint="free some space, or use --output elsewhere")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _database_facts(conn) -> dict:
    row = conn.execute("SELECT current_setting('server_version'), pg_database_size(current_database()),"
                       " current_database()").fetchone()
    revision = None
    if conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()[0]:
        found = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = found[0] if found else None
    assets_bytes = 0
    if conn.execute("SELECT to_regclass('public.assets')").fetchone()[0]:
        assets_bytes = conn.execute("SELECT coalesce(sum(size), 0) FROM assets").fetchone()[0]
    conn.rollback()
    return {"server_version": row[0], "size_bytes": row[1], "name": row[2], "revision": revision,
            "assets_bytes": int(assets_bytes), "tables": {}}


def _snapshot(conn) -> str:
    """Open the backup's snapshot (pg_dump joins it with --snapshot)."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    return conn.execute("SELECT pg_export_snapshot()").fetchone()[0]


def _contents(conn, facts: dict, with_assets: bool) -> list[tuple[str, str, int]]:
    """Row counts and the asset list in the snapshot, as pg_dump sees them. Runs while
    pg_dump does (the connection is otherwise idle then)."""
    from psycopg import sql

    # No parallel workers: they would be server processes outside the backup's priority.
    conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
    tables = [r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename").fetchall()]
    facts["tables"] = {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", t))).fetchone()[0]
                       for t in tables}
    # Each table's data (heap and TOAST, no indexes): how restore splits the work.
    facts["table_bytes"] = {t: conn.execute("SELECT pg_table_size(%s::regclass)", (f"public.{t}",)).fetchone()[0]
                            for t in tables}
    if with_assets and "assets" in facts["tables"]:
        return [(r[0], r[1], int(r[2])) for r in conn.execute(
            "SELECT storage_path, sha256, size FROM assets ORDER BY sha256, storage_path").fetchall()]
    return []


def _lower_dump_backend(runtime, conn, governor, dump_done) -> None:
    """On the local runtime, the server processes doing the backup's reading (pg_dump's
    and the row counts') get the backup's priority too: the app's queries come first.
    The docker runtime's db container is left alone. Gives up when the dump ends first
    (a small database), so a quick backup never waits for a backend already gone."""
    if runtime.name != "local" or governor is None:
        return
    _lower_backend(governor, conn.info.backend_pid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not dump_done.is_set():
        # The activity view is read once per transaction (and this one holds the
        # snapshot): clear that cache, or pg_dump's session would never show up.
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'pg_dump'"
                           " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                           " ORDER BY backend_start DESC LIMIT 1").fetchone()
        if row:
            _lower_backend(governor, row[0])
            return
        time.sleep(0.05)


def _lower_backend(governor, pid: int) -> None:
    priority.lower(pid)
    governor.add(pid)


def _counting(runtime, conn, facts: dict, options: BackupOptions, governor):
    """A thread computing the snapshot's contents while pg_dump runs."""
    import threading

    result: dict = {}
    dump_done = threading.Event()

    def work():
        try:
            _lower_dump_backend(runtime, conn, governor, dump_done)
            result["assets"] = _contents(conn, facts, options.assets)
        except BaseException as exc:  # re-raised by the caller
            result["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()

    def join() -> list[tuple[str, str, int]]:
        dump_done.set()
        thread.join()
        if "error" in result:
            raise result["error"]
        return result["assets"]
    return join


def _write(runtime, layout, conn, facts, tmp: Path, options: BackupOptions, created: datetime,
           project_dir: Path, progress: Progress, governor=None) -> dict:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w+b") as file:
        tar = archive.TarWriter(file)
        recipients, encryption = _encryption_members(tar, options.keys)
        snapshot = _snapshot(conn)
        contents = _counting(runtime, conn, facts, options, governor)
        try:
            dump = _dump(runtime, tar, snapshot, options, recipients, progress)
        finally:
            asset_rows = contents()
        conn.rollback()  # pg_dump is done with the snapshot
        assets = _assets(runtime, layout, project_dir, tar, asset_rows, recipients, progress) if options.assets else None
        secrets = _secrets(layout, tar, recipients) if options.secrets else []
        from dynoctl import __version__

        manifest = {
            "format": FORMAT, "dynoctl_version": __version__, "created_at": created.isoformat(timespec="seconds"),
            "runtime": runtime.name, "encryption": encryption,
            "database": {"name": facts["name"], "alembic_revision": facts["revision"],
                         "server_version": facts["server_version"], "size_bytes": facts["size_bytes"],
                         "tables": facts["tables"], "table_bytes": facts.get("table_bytes", {})},
            "dump": dump, "assets": assets, "secrets": secrets,
            "members": [vars(m) for m in tar.members],
        }
        tar.add_bytes(archive.MANIFEST, json.dumps(manifest, indent=1).encode())
        tar.finish()
        archive.fsync(file)
    return manifest


def _encryption_members(tar: archive.TarWriter, keys: Keys) -> tuple[list[str], str]:
    if not keys.any:
        return [], "none"
    recipients = list(keys.recipients) + [backupcrypto.public_key(i) for i in keys.identities]
    if keys.passphrase:
        identity = backupcrypto.generate_identity()
        recipients.append(backupcrypto.public_key(identity))
        tar.add_bytes(archive.IDENTITY, backupcrypto.wrap_identity(identity, keys.passphrase))
    tar.add_bytes(archive.CHECK, backupcrypto.encrypt_bytes(archive.CHECK_TEXT, recipients))
    return recipients, keys.method


def _dump(runtime, tar: archive.TarWriter, snapshot: str, options: BackupOptions, recipients: list[str],
          progress: Progress) -> dict:
    import zstandard

    name = archive.DUMP + (archive.AGE if recipients else "")
    start, writer = tar.open_member()
    counted: dict = {}

    def compress(pg_dump_output: BinaryIO) -> None:
        # Counted, not hashed: the member's own sha256 and zstd's frame checksum cover it.
        source = archive.HashingReader(pg_dump_output, _every_mib(progress), hashing=False)
        counted["reader"] = source
        threads = options.zstd_threads or default_zstd_threads()
        cctx = zstandard.ZstdCompressor(level=options.zstd_level, threads=threads, write_checksum=True)
        with cctx.stream_reader(source, read_size=archive.CHUNK, closefd=False) as compressed:
            if recipients:
                backupcrypto.encrypt_stream(compressed, writer, recipients)
            else:
                archive.copy(compressed, writer)

    progress("dump")
    argv = ["pg_dump", "--format=custom", "--compress=0", f"--snapshot={snapshot}", "--dbname", DBNAME]
    code = pipes.run(runtime, "db", argv, sink=compress)
    pipes.check(code, "pg_dump", hint="check that the database is up ('dynoctl status')")
    tar.close_member(start, writer, name)
    source = counted["reader"]
    return {"member": name, "format": "custom", "compression": f"zstd-{options.zstd_level}",
            "uncompressed_bytes": source.size}


def _every_mib(progress: Progress):
    """Progress for a byte count, said at most once per MiB (a status line per chunk costs)."""
    state = {"said": -1}

    def on_bytes(n: int) -> None:
        if n >> 20 != state["said"]:
            state["said"] = n >> 20
            progress(f"dump {_mib(n)}")
    return on_bytes


# ----------------------------------------------------------------------- assets
def _assets(runtime, layout, project_dir: Path, tar: archive.TarWriter, rows: list[tuple[str, str, int]],
            recipients: list[str], progress: Progress) -> dict:
    """Each distinct content once, named by its sha256 as read (not as recorded)."""
    files: dict[str, str] = {}
    stored: set[str] = set()
    missing: list[str] = []
    by_recorded: dict[str, str] = {}  # recorded sha -> actual sha of what we stored
    wanted = []
    for storage_path, sha, _size in rows:
        if sha in by_recorded:
            files[storage_path] = by_recorded[sha]
        else:
            wanted.append((storage_path, sha))
    done = 0
    for (storage_path, sha), stream in _asset_streams(runtime, layout, project_dir, wanted):
        if stream is None:
            missing.append(storage_path)
            continue
        start, writer = tar.open_member()
        source = archive.HashingReader(stream)
        if recipients:
            backupcrypto.encrypt_stream(source, writer, recipients)
        else:
            archive.copy(source, writer)
        actual = source.hash.hexdigest()
        if actual in stored:
            tar.discard_member(start)
        else:
            tar.close_member(start, writer, f"{archive.ASSETS}{actual}" + (archive.AGE if recipients else ""))
            stored.add(actual)
        files[storage_path] = by_recorded.setdefault(sha, actual)
        done += 1
        progress(f"assets {done}/{len(wanted)}")
    # Rows sharing a recorded sha whose first file was missing are missing too.
    for storage_path, sha, _size in rows:
        if storage_path not in files and storage_path not in missing:
            missing.append(storage_path)
    return {"files": files, "distinct": len(stored), "missing": missing}


def _asset_streams(runtime, layout, project_dir: Path, wanted: list[tuple[str, str]]) -> Iterator:
    if runtime.name == "docker":
        yield from _container_asset_streams(runtime, wanted)
        return
    root = assets_dir(runtime, project_dir)
    for item in wanted:
        try:
            with open(root / item[0], "rb") as stream:
                yield item, stream
        except FileNotFoundError:
            yield item, None


def assets_dir(runtime, project_dir: Path) -> Path:
    """ASSETS_DIR of the local runtime's server, absolute."""
    return (project_dir / runtime.server_env.get("ASSETS_DIR", ".dyno/assets")).resolve()


CONTAINER_ASSETS = "/data/assets"


def _container_asset_streams(runtime, wanted: list[tuple[str, str]]) -> Iterator:
    """The files, read by tar inside the server container (they live in its volume),
    streamed out through exec and handed on one by one."""
    import queue
    import tarfile
    import threading

    items: "queue.Queue" = queue.Queue(maxsize=1)
    done = threading.Event()
    names = "".join(f"{path}\n" for path, _ in wanted).encode()

    def sink(reader):
        with tarfile.open(fileobj=reader, mode="r|") as stream:
            for info in stream:
                if info.isfile():
                    items.put((info.name, stream.extractfile(info)))
                    done.wait()
                    done.clear()
        items.put(None)

    def feed(writer):
        writer.write(names)

    import threading as _t

    result: dict = {}
    worker = _t.Thread(target=lambda: result.setdefault("code", pipes.run(
        runtime, "server", ["tar", "-C", CONTAINER_ASSETS, "--ignore-failed-read", "-cf", "-", "-T", "-"],
        feed=feed, sink=sink)), daemon=True)
    worker.start()
    seen = set()
    by_path = dict(wanted)
    while True:
        item = items.get()
        if item is None:
            break
        path, stream = item
        path = path.removeprefix("./")
        seen.add(path)
        yield (path, by_path.get(path, "")), stream
        done.set()
    worker.join()
    for path, sha in wanted:
        if path not in seen:
            yield (path, sha), None


# ---------------------------------------------------------------------- secrets
def secret_files(layout) -> list[Path]:
    env = sorted(p for p in layout.env_dir.glob("*.env") if p.is_file())
    keys = layout.state_dir / "keys" / "jwt-keys.json"
    return env + ([keys] if keys.is_file() else [])


def _secrets(layout, tar: archive.TarWriter, recipients: list[str]) -> list[dict]:
    stored = []
    for path in secret_files(layout):
        kind = "jwt-keys" if path.name == "jwt-keys.json" else "env"
        member = tar.add_bytes(f"{archive.SECRETS}{path.name}{archive.AGE}",
                               backupcrypto.encrypt_bytes(path.read_bytes(), recipients))
        stored.append({"member": member.name, "file": path.name, "kind": kind})
    return stored


# ---------------------------------------------------------------------- checks
def _rewrite_manifest_check(tmp: Path, manifest: dict) -> None:
    problems = check_members(tmp, manifest)
    if problems:
        raise DynoctlError(f"the archive read back differs from what was written: {problems[0]}",
                           hint="the disk may be failing; nothing was kept")


def check_members(path: Path, manifest: dict, progress: Progress = lambda _: None,
                  later: frozenset[str] = frozenset()) -> list[str]:
    """Every member's size and sha256 against the manifest: one line per problem,
    naming the member. Members named in ``later`` are only looked up (their caller
    hashes them while it reads them anyway, before it uses them)."""
    import tarfile

    expected = {m["name"]: m for m in manifest["members"]}
    problems = []
    try:
        with archive.open_tar(path) as tar:
            for info in archive.members(tar):
                if info.name == archive.MANIFEST:
                    continue
                want = expected.pop(info.name, None)
                if want is None:
                    problems.append(f"{info.name}: not in the manifest")
                    continue
                if info.name in later:
                    continue
                progress(f"checksum {info.name}")
                size, digest = archive.sha256_of(tar.extractfile(info))
                if size != want["size"] or digest != want["sha256"]:
                    problems.append(f"{info.name}: checksum mismatch (the member is damaged)")
    except (tarfile.TarError, OSError) as exc:
        problems.append(f"the archive is truncated or damaged: {exc}")
    problems += [f"{name}: missing from the archive" for name in expected]
    return problems


# ------------------------------------------------------------------------- list
@dataclass(frozen=True)
class BackupInfo:
    name: str
    path: Path
    created_at: str | None
    size: int
    revision: str | None
    encrypted: bool | None
    runtime: str | None
    last_verified: str | None
    error: str | None = None


def list_backups(directory: Path, state_dir: Path) -> list[BackupInfo]:
    verified = last_verified(state_dir)
    found = []
    for path in sorted(directory.glob(f"{PREFIX}*{SUFFIX}")) if directory.is_dir() else []:
        try:
            m = read_manifest(path)
            found.append(BackupInfo(path.name, path, m["created_at"], path.stat().st_size,
                                    m["database"]["alembic_revision"], m["encryption"] != "none", m["runtime"],
                                    verified.get(path.name)))
        except DynoctlError as exc:
            found.append(BackupInfo(path.name, path, None, path.stat().st_size, None, None, None,
                                    verified.get(path.name), exc.message))
    return sorted(found, key=lambda b: (b.created_at or "", b.name))


def last_verified(state_dir: Path) -> dict[str, str]:
    from dynoctl import history

    return {run.summary["name"]: run.finished_at for run in history.read(state_dir, job="backup-verify")
            if run.status == "ok" and run.summary.get("name")}


# ----------------------------------------------------------------------- verify
@dataclass(frozen=True)
class VerifyResult:
    name: str
    ok: bool
    members: int
    problems: list[str]
    toc_entries: int | None  # pg_restore --list entries (None: not read)
    restore_test: dict | None  # table -> {"expected": n, "restored": n}
    notes: list[str] = field(default_factory=list)


def verify(path: Path, runtime, keys: Keys, *, restore_test: bool = False,
           progress: Progress = lambda _: None) -> VerifyResult:
    manifest = read_manifest(path)
    problems = check_members(path, manifest, progress)
    notes: list[str] = []
    toc = tested = None
    if problems:
        raise DynoctlError(f"{path.name} failed verification: {problems[0]}", hint="use another backup",
                           details=problems[1:])
    from dynoctl import restore as restoring

    identities = restoring.identities_for(path, manifest, keys) if manifest["encryption"] != "none" else []
    if manifest["encryption"] != "none" and not identities:
        notes.append("encrypted and no key given: checksums only (pass --identity or a passphrase to read the dump)")
    else:
        progress("reading the dump's table of contents")
        toc = _toc_entries(runtime, path, manifest, identities)
        if restore_test:
            tested = restoring.restore_test(runtime, path, manifest, identities, progress)
            bad = [t for t, counts in tested.items() if counts["expected"] != counts["restored"]]
            if bad:
                raise DynoctlError(f"{path.name}: the restore test found different row counts in {', '.join(bad)}",
                                   hint="use another backup")
    return VerifyResult(path.name, True, len(manifest["members"]), [], toc, tested, notes)


def _toc_entries(runtime, path: Path, manifest: dict, identities: list[str]) -> int:
    from dynoctl import restore as restoring

    lines = {"n": 0}

    def count(reader):
        for line in reader:
            if line.strip() and not line.startswith(b";"):
                lines["n"] += 1

    code = pipes.run(runtime, "db", ["pg_restore", "--list"],
                     feed=lambda w: restoring.write_dump(path, manifest, identities, w), sink=count)
    pipes.check(code, "pg_restore --list", hint="the dump is unreadable: use another backup")
    return lines["n"]


# ------------------------------------------------------------------------ prune
@dataclass(frozen=True)
class PrunePlan:
    keep: list[dict]  # {"name", "created_at", "reasons"}
    delete: list[dict]
    applied: bool = False
    # The databases and asset trees restores and rollbacks kept (dynoctl.restore.KeptCopy),
    # past --keep-safety-days; a note when they could not be looked at.
    safety_copies: list = field(default_factory=list)
    safety_copies_note: str | None = None


def plan_prune(backups: list[BackupInfo], keep_last: int, keep_daily: int, keep_weekly: int,
               keep_monthly: int) -> PrunePlan:
    """Which backups a retention policy keeps. Unreadable archives are never touched.
    The newest backup and the newest verified one are always kept."""
    dated = [b for b in backups if b.created_at]
    dated.sort(key=lambda b: b.created_at, reverse=True)
    reasons: dict[str, list[str]] = {b.name: [] for b in dated}
    for b in dated[:keep_last]:
        reasons[b.name].append("last")
    for label, count, bucket in (("daily", keep_daily, lambda d: d.strftime("%Y-%m-%d")),
                                 ("weekly", keep_weekly, lambda d: "%d-W%02d" % d.isocalendar()[:2]),
                                 ("monthly", keep_monthly, lambda d: d.strftime("%Y-%m"))):
        seen: list[str] = []
        for b in dated:  # newest first: the newest of each period stands for it
            key = bucket(datetime.fromisoformat(b.created_at))
            if key not in seen and len(seen) < count:
                seen.append(key)
                reasons[b.name].append(label)
    if dated:
        reasons[dated[0].name].append("newest")
    verified = [b for b in dated if b.last_verified]
    if verified:
        reasons[verified[0].name].append("newest verified")
    keep = [{"name": b.name, "created_at": b.created_at, "reasons": reasons[b.name]} for b in dated if reasons[b.name]]
    delete = [{"name": b.name, "created_at": b.created_at, "reasons": []} for b in dated if not reasons[b.name]]
    return PrunePlan(keep, delete)


def apply_prune(plan: PrunePlan, directory: Path) -> PrunePlan:
    for item in plan.delete:
        (directory / item["name"]).unlink(missing_ok=True)
    return replace(plan, applied=True)


# ---------------------------------------------------------------------- metrics
def write_metrics(path: Path, job: str, ok: bool, duration_s: float, size: int | None = None) -> None:
    """Prometheus textfile-collector gauges for ``job`` (backup, verify), kept
    beside the other job's in the same file; written atomically."""
    from dynoctl.atomicfile import write_atomic

    prefix = f"dyno_{job}_"
    try:
        kept = [line for line in path.read_text().splitlines() if prefix not in line]
    except FileNotFoundError:
        kept = []
    now = time.time()
    lines = [f"# HELP {prefix}last_run_timestamp_seconds Unix time of the last {job} run.",
             f"# TYPE {prefix}last_run_timestamp_seconds gauge", f"{prefix}last_run_timestamp_seconds {now:.0f}",
             f"# TYPE {prefix}last_run_success gauge", f"{prefix}last_run_success {int(ok)}",
             f"# TYPE {prefix}last_duration_seconds gauge", f"{prefix}last_duration_seconds {duration_s:.3f}"]
    if ok:
        lines += [f"# TYPE {prefix}last_success_timestamp_seconds gauge",
                  f"{prefix}last_success_timestamp_seconds {now:.0f}"]
    elif (old := [ln for ln in (path.read_text().splitlines() if path.exists() else [])
                  if ln.startswith(f"{prefix}last_success_timestamp_seconds ")]):
        lines += [f"# TYPE {prefix}last_success_timestamp_seconds gauge", old[0]]
    if size is not None:
        lines += [f"# TYPE {prefix}last_size_bytes gauge", f"{prefix}last_size_bytes {size}"]
    write_atomic(path, "\n".join([*kept, *lines]) + "\n", mode=0o644)


def age_of(created_at: str) -> timedelta:
    return datetime.now(timezone.utc) - datetime.fromisoformat(created_at)
