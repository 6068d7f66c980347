"""Data hygiene: plans and batched deletes of stale sessions, orphan assets and old
archived projects, over the tables of ``dynoserver.models``.

Rules every kind keeps (see README, "purge"):

- the cutoff is computed once per run, from the database's clock;
- a plan (the default) only counts; ``apply`` deletes in short transactions that
  select their batch by primary key with ``FOR UPDATE SKIP LOCKED`` under a per-batch
  ``lock_timeout``/``statement_timeout``: a row the app holds is skipped, never
  waited on, and the app never waits long on us; memory is one batch whatever the
  table size (keyset pagination, no list of all ids);
- each kind holds a PostgreSQL advisory lock on its own connection for the whole run:
  a second run of the same kind is refused (Busy, exit 75) before it changes anything;
- rows go before files (a crash leaves orphan files for the next sweep, never a row
  pointing at a deleted file); orphan files go to a quarantine first;
- counts are of confirmed deletions (rows returned by DELETE ... RETURNING, files
  actually renamed/unlinked); each run ends with ANALYZE of the tables it changed and
  reports table and file sizes before and after.

Purge does not take the project lock (dynoctl.lock): it only deletes what is dead by
rules that hold under any concurrent writer, so it need not stop a backup or a
rotation, and a long backup must not starve the nightly purge. The advisory locks
serialise purges of the same kind. The one writer it must not race is a restore (files
come back before their rows, with old mtimes): the command refuses to touch files while
the project lock's holder is a restore (``restore_running``)."""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

from dynoctl.errors import Busy, DynoctlError, Refused, Unreachable

KINDS = ("sessions", "assets", "projects", "quarantine")
ALL_KINDS = ("sessions", "projects", "assets")  # projects before assets: its files are gone with it
MIN_GRACE = timedelta(hours=1)
# Advisory lock keys: (namespace, kind). The namespace is "dyno" as an int32.
LOCK_NAMESPACE = 0x64796E6F
_LOCK_IDS = {kind: i + 1 for i, kind in enumerate(KINDS)}
LOCK_TIMEOUT_MS = 200
STATEMENT_TIMEOUT_MS = 5000
# Batches adapt so one transaction stays well under the 250 ms budget.
BATCH_MIN, BATCH_START, BATCH_MAX = 100, 2000, 10000
TARGET_BATCH_S = 0.05
SAMPLE_LIMIT = 20  # unknown paths / missing files listed in a report


@dataclass
class PurgeOptions:
    older_than: timedelta = timedelta(days=7)  # sessions
    project_older_than: timedelta = timedelta(days=90)
    grace: timedelta = timedelta(hours=24)  # assets
    retention: timedelta = timedelta(days=7)  # quarantine
    fix: bool = False  # assets: also delete rows whose file is missing
    max_delete: int | None = None
    wait: float = 0  # seconds to queue for a kind's advisory lock
    now: datetime | None = None  # the database's clock unless given (tests)

    def check(self) -> None:
        if self.grace < MIN_GRACE:
            raise Refused(f"--grace must be at least {MIN_GRACE}: younger files may be uploads in flight",
                          hint="pass --grace 1h or more")


@dataclass
class KindReport:
    """One kind's plan (applied=False) or run. Counts are of confirmed actions."""

    kind: str
    applied: bool
    cutoff: datetime | None = None
    candidates: int = 0
    deleted: int = 0  # rows (sessions, projects, asset rows) or quarantined files dropped
    quarantined: int = 0  # files moved to the quarantine
    files_deleted: int = 0
    bytes_freed: int = 0  # file bytes removed or moved out of the live tree
    table_bytes_before: dict[str, int] = field(default_factory=dict)
    table_bytes_after: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    samples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few paths
    batches: int = 0
    longest_batch_ms: float = 0.0
    batch_seconds: float = 0.0  # time inside delete transactions (the rest: plan, scans, ANALYZE)
    duration_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    detail: dict[str, int] = field(default_factory=dict)  # per-category candidates

    def skip(self, reason: str, count: int = 1, sample: str | None = None) -> None:
        if count:
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        if sample is not None and len(self.samples.setdefault(reason, [])) < SAMPLE_LIMIT:
            self.samples[reason].append(sample)

    @property
    def status(self) -> str:
        return "failed" if self.errors else "ok"


@dataclass
class PurgeReport:
    applied: bool
    kinds: list[KindReport]
    status: str = ""  # "ok" | "partial" (some kinds failed) | "failed" (all did)

    def __post_init__(self):
        failed = [k for k in self.kinds if k.errors]
        self.status = "ok" if not failed else "failed" if len(failed) == len(self.kinds) else "partial"


Progress = Callable[[str, int, int], None]  # (kind, done, total)


def _no_progress(kind: str, done: int, total: int) -> None:
    pass


# -- connections -------------------------------------------------------------------


def libpq_url(database_url: str) -> str:
    from dynoserver.dburl import sqlalchemy_url

    return sqlalchemy_url(database_url).replace("postgresql+psycopg://", "postgresql://", 1)


def connect(database_url: str):
    """A direct psycopg connection (autocommit: each batch is its own transaction)."""
    import psycopg

    try:
        return psycopg.connect(libpq_url(database_url), autocommit=True, connect_timeout=5,
                               application_name="dynoctl purge")
    except psycopg.OperationalError as exc:
        from dynoctl.db import address, first_line

        raise Unreachable(f"the database at {address(database_url)} does not accept connections: "
                          f"{first_line(exc)}", hint="start it with 'dynoctl up'") from None


@contextmanager
def kind_lock(conn, kind: str, wait: float = 0) -> Iterator[None]:
    """The advisory lock of one purge kind, held by this session for the body. It is a
    session lock, so it must be a direct connection (a transaction-pooling proxy would
    hand it to someone else); PostgreSQL drops it when the connection ends, kill -9
    included."""
    deadline = time.monotonic() + wait
    while not conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                           (LOCK_NAMESPACE, _LOCK_IDS[kind])).fetchone()[0]:
        if time.monotonic() >= deadline:
            raise Busy(f"another purge of {kind} is running", hint="let it finish, or pass --wait SECONDS to queue")
        time.sleep(0.2)
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, _LOCK_IDS[kind]))


@contextmanager
def batch_transaction(conn, durable: bool = True) -> Iterator[None]:
    """One short transaction with its own timeouts: the app's locks make us skip or
    give up quickly, never wait behind them. ``durable=False`` commits without waiting
    for the WAL flush: for deletes that nothing else depends on (sessions), where a
    commit lost in a database crash only means the next run deletes those rows again.
    Never for rows whose files are removed after the commit."""
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
        conn.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
        if not durable:
            conn.execute("SET LOCAL synchronous_commit = off")
        yield


def db_now(conn) -> datetime:
    return conn.execute("SELECT now()").fetchone()[0]


def table_bytes(conn, tables) -> dict[str, int]:
    return {t: conn.execute("SELECT pg_total_relation_size(%s::regclass)", (t,)).fetchone()[0] for t in tables}


class Batcher:
    """Adapts the batch size to keep each transaction near TARGET_BATCH_S; records
    the count and the longest transaction."""

    def __init__(self, report: KindReport, durable: bool = True):
        self.size = BATCH_START
        self.report = report
        self.durable = durable

    @contextmanager
    def batch(self, conn) -> Iterator[None]:
        started = time.perf_counter()
        with batch_transaction(conn, self.durable):
            yield
        elapsed = time.perf_counter() - started
        self.report.batches += 1
        self.report.batch_seconds = round(self.report.batch_seconds + elapsed, 3)
        self.report.longest_batch_ms = max(self.report.longest_batch_ms, round(elapsed * 1000, 1))
        if elapsed > TARGET_BATCH_S * 2:
            self.size = max(BATCH_MIN, self.size // 2)
        elif elapsed < TARGET_BATCH_S / 2:
            self.size = min(BATCH_MAX, self.size * 2)


def _lock_failure(exc) -> bool:
    import psycopg.errors as pe

    return isinstance(exc, (pe.LockNotAvailable, pe.QueryCanceled))


# -- sessions ----------------------------------------------------------------------

# Two passes, each walking its own index in order: expired sessions, then revoked ones
# not already expired. The keyset (the last batch's highest key, inclusive: ties) keeps
# each batch from rescanning the dead index entries of the batches before it; ordering
# by the indexed column alone lets the planner read the index in order and stop at
# LIMIT (ordering by (column, id) would sort every candidate on every batch).
_SESSION_PASSES = {
    "expired": ("expires_at", "expires_at < %(cutoff)s"),
    "revoked": ("revoked_at", "revoked_at < %(cutoff)s AND expires_at >= %(cutoff)s"),
}


def plan_sessions(conn, cutoff: datetime, report: KindReport) -> None:
    for name, (_, where) in _SESSION_PASSES.items():
        n = conn.execute(f"SELECT count(*) FROM sessions WHERE {where}", {"cutoff": cutoff}).fetchone()[0]
        report.detail[name] = n
        report.candidates += n


def _session_batch_sql(column: str, where: str, keyset: str, skip_locked: bool) -> str:
    """One batch: the next stale rows in index order, deleted by tuple id (a TID scan;
    a join on id would scan the table). The stale condition is repeated in the DELETE
    so that a row refreshed since the batch was read (PostgreSQL re-checks the newest
    version) is kept. With ``skip_locked`` the rows are locked first and the app's
    rows are skipped; without, a row the app holds makes the DELETE wait, which the
    fast path's tiny lock_timeout turns into a retry with skip_locked."""
    lock = "FOR UPDATE SKIP LOCKED" if skip_locked else ""
    return (f"WITH batch AS (SELECT ctid AS t, {column} AS k FROM sessions WHERE {where} {keyset} "
            f"ORDER BY {column} LIMIT %(n)s {lock}), "
            f"gone AS (DELETE FROM sessions WHERE ctid = ANY(ARRAY(SELECT t FROM batch)) AND {where} RETURNING 1) "
            f"SELECT (SELECT count(*) FROM gone), (SELECT max(k) FROM batch)")


FAST_PATH_LOCK_TIMEOUT_MS = 20


def apply_sessions(conn, cutoff: datetime, report: KindReport, progress: Progress) -> None:
    """Row locks cost as much as the delete itself (each is a WAL record), so a batch
    first runs without them under a 20 ms lock_timeout; only a batch that meets a row
    the app holds is redone with FOR UPDATE SKIP LOCKED."""
    batcher = Batcher(report, durable=False)
    for column, where in _SESSION_PASSES.values():
        last = None  # the highest key of the last batch
        while True:
            keyset = f"AND {column} >= %(last)s" if last is not None else ""
            params = {"cutoff": cutoff, "n": batcher.size, "last": last}
            try:
                deleted, k = _session_batch(conn, batcher, column, where, keyset, params, report)
            except Exception as exc:  # noqa: BLE001 - a lock we would wait on even so
                if not _lock_failure(exc):
                    raise
                report.skip("lock timeout")
                if report.skipped["lock timeout"] > 20:
                    raise
                batcher.size = max(BATCH_MIN, batcher.size // 2)
                continue
            report.deleted += deleted or 0
            # Done when nothing is left, or only rows the app holds at the same key.
            if k is None or (not deleted and k == last):
                break
            last = k
            progress("sessions", report.deleted, report.candidates)


def _session_batch(conn, batcher, column, where, keyset, params, report):
    try:
        with batcher.batch(conn):
            conn.execute(f"SET LOCAL lock_timeout = {FAST_PATH_LOCK_TIMEOUT_MS}")
            return conn.execute(_session_batch_sql(column, where, keyset, False), params).fetchone()
    except Exception as exc:  # noqa: BLE001
        import psycopg.errors as pe

        if not isinstance(exc, pe.LockNotAvailable):
            raise
    report.detail["batches_meeting_app_locks"] = report.detail.get("batches_meeting_app_locks", 0) + 1
    with batcher.batch(conn):
        return conn.execute(_session_batch_sql(column, where, keyset, True), params).fetchone()


# -- projects ----------------------------------------------------------------------


def plan_projects(conn, cutoff: datetime, report: KindReport) -> None:
    row = conn.execute(
        "SELECT count(*), (SELECT count(*) FROM tasks t JOIN projects p ON p.id = t.project_id "
        "                  WHERE p.archived_at < %(c)s), "
        "(SELECT count(*) FROM assets a JOIN projects p ON p.id = a.project_id WHERE p.archived_at < %(c)s) "
        "FROM projects WHERE archived_at < %(c)s", {"c": cutoff}).fetchone()
    report.candidates = row[0]
    report.detail = {"projects": row[0], "tasks": row[1], "assets": row[2]}


def apply_projects(conn, cutoff: datetime, report: KindReport, store, progress: Progress) -> None:
    batcher = Batcher(report)
    last = uuid.UUID(int=0)
    while True:
        row = conn.execute("SELECT id FROM projects WHERE archived_at < %s AND id > %s ORDER BY id LIMIT 1",
                           (cutoff, last)).fetchone()
        if row is None:
            break
        last = row[0]
        outcome = _purge_project(conn, last, cutoff, batcher, report, store)
        if outcome != "deleted":
            report.skip(outcome)
        progress("projects", report.deleted, report.candidates)


def _purge_project(conn, project_id, cutoff, batcher: Batcher, report: KindReport, store) -> str:
    """Delete one project's assets (rows, then their files), tasks, then the project.
    Every batch first re-reads the project under FOR SHARE: unarchived since the plan
    (or being changed right now) means kept."""
    still_archived = "SELECT 1 FROM projects WHERE id = %s AND archived_at < %s FOR SHARE SKIP LOCKED"
    for table, returning in (("assets", "storage_path"), ("tasks", "id")):
        while True:
            size = batcher.size  # the batcher adapts after the batch: compare with what was asked
            try:
                with batcher.batch(conn):
                    if conn.execute(still_archived, (project_id, cutoff)).fetchone() is None:
                        return "unarchived or in use"
                    rows = conn.execute(
                        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE project_id = %s "
                        f"LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING {returning}",
                        (project_id, size)).fetchall()
            except Exception as exc:  # noqa: BLE001
                if not _lock_failure(exc):
                    raise
                return "lock timeout"
            if table == "assets" and rows:
                report.detail["asset_rows_deleted"] = report.detail.get("asset_rows_deleted", 0) + len(rows)
                _remove_files(store, [r[0] for r in rows], report)
            if len(rows) < size:
                break
    with batcher.batch(conn):
        gone = conn.execute("DELETE FROM projects WHERE id = %s AND archived_at < %s RETURNING id",
                            (project_id, cutoff)).fetchone()
    if gone is None:
        return "unarchived or in use"
    report.deleted += 1
    return "deleted"


def _remove_files(store, paths: list[str], report: KindReport) -> None:
    if store is None:
        return
    for _, size in store.remove(paths):
        report.files_deleted += 1
        report.bytes_freed += size


# -- assets ------------------------------------------------------------------------


def _lookup_batches(items, size: int = 1000):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def sweep_files(conn, store, grace: timedelta, report: KindReport, apply: bool, stamp: str) -> None:
    """(a) files with no row older than the grace, abandoned .part uploads; unknown
    paths are reported and never touched. Streams the listing in batches."""
    grace_s = grace.total_seconds()
    entries = (e for e in store.scan() if _triage(e, grace_s, report))
    for batch in _lookup_batches(entries):
        stored = [e[0] for e in batch if e[1] == "stored"]
        with_rows = {r[0] for r in conn.execute("SELECT storage_path FROM assets WHERE storage_path = ANY(%s)",
                                                (stored,))} if stored else set()
        orphans = [e for e in batch if e[0] not in with_rows]
        report.skip("has a row", len(batch) - len(orphans))
        for path, kind, size, _ in orphans:
            report.detail[kind + "_orphans"] = report.detail.get(kind + "_orphans", 0) + 1
        report.candidates += len(orphans)
        if apply and orphans:
            # Checked again just before the move: a row may have been committed since.
            again = {r[0] for r in conn.execute("SELECT storage_path FROM assets WHERE storage_path = ANY(%s)",
                                                ([e[0] for e in orphans],))}
            report.skip("row appeared", len(again))
            for _, size in store.quarantine([e[0] for e in orphans if e[0] not in again], stamp):
                report.quarantined += 1
                report.bytes_freed += size


def _triage(entry, grace_s: float, report: KindReport) -> bool:
    path, kind, size, age = entry
    report.detail["files_scanned"] = report.detail.get("files_scanned", 0) + 1
    if kind == "unknown":
        report.skip("unknown path (never touched)", sample=path)
        return False
    if age < grace_s:
        report.skip("younger than the grace")
        return False
    return True


def sweep_dangling_rows(conn, store, report: KindReport, apply: bool, fix: bool, progress: Progress) -> None:
    """(b) rows whose project or task is gone (only possible after FK checks were
    bypassed, e.g. a partial restore): deleted, then their files quarantined;
    (c) rows whose file is missing: reported, deleted only with ``fix``."""
    stamp = None
    last = uuid.UUID(int=0)
    batcher = Batcher(report)
    while True:
        rows = conn.execute(
            "SELECT a.id, a.storage_path, (p.id IS NULL OR (a.task_id IS NOT NULL AND t.id IS NULL)) "
            "FROM assets a LEFT JOIN projects p ON p.id = a.project_id LEFT JOIN tasks t ON t.id = a.task_id "
            "WHERE a.id > %s ORDER BY a.id LIMIT 1000", (last,)).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        dangling = [r for r in rows if r[2]]
        present = set(store.existing([r[1] for r in rows if not r[2]]))
        missing = [r for r in rows if not r[2] and r[1] not in present]
        report.detail["dangling_rows"] = report.detail.get("dangling_rows", 0) + len(dangling)
        report.detail["missing_files"] = report.detail.get("missing_files", 0) + len(missing)
        report.candidates += len(dangling) + (len(missing) if fix else 0)
        for r in missing:
            if not fix:
                report.skip("row without file (pass --fix)", sample=r[1])
        doomed = dangling + (missing if fix else [])
        if apply and doomed:
            with batcher.batch(conn):
                gone = conn.execute("DELETE FROM assets WHERE id = ANY(%s) RETURNING storage_path",
                                    ([r[0] for r in doomed],)).fetchall()
            report.deleted += len(gone)
            stamp = stamp or quarantine_stamp()
            for _, size in store.quarantine([g[0] for g in gone], stamp):
                report.quarantined += 1
                report.bytes_freed += size
        progress("assets", report.deleted, report.candidates)


def quarantine_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")


# -- quarantine --------------------------------------------------------------------


def quarantine_pass(store, retention: timedelta, report: KindReport, apply: bool) -> None:
    for stamp, files, size, age in list(store.batches()):
        if age < retention.total_seconds():
            report.skip("within retention", files)
            continue
        report.candidates += files
        report.detail["batches_due"] = report.detail.get("batches_due", 0) + 1
        if apply:
            for _, freed in store.drop(stamp):
                report.deleted += 1
                report.files_deleted += 1
                report.bytes_freed += freed


# -- the run -----------------------------------------------------------------------

_TABLES = {"sessions": ["sessions"], "projects": ["projects", "tasks", "assets"], "assets": ["assets"],
           "quarantine": []}


def run(database_url: str, store, kinds: list[str], options: PurgeOptions, apply: bool,
        progress: Progress = _no_progress) -> PurgeReport:
    """Plan every kind (cutoffs computed once), refuse past --max-delete, then apply
    kind by kind under its advisory lock. A kind that fails does not stop the others."""
    options.check()
    conn = connect(database_url)
    try:
        return _run(conn, store, kinds, options, apply, progress)
    finally:
        conn.close()


def _run(conn, store, kinds, options, apply, progress) -> PurgeReport:
    from contextlib import ExitStack

    now = options.now or db_now(conn)
    with ExitStack() as locks:
        for kind in kinds:  # all locks first: a busy kind changes nothing at all
            locks.enter_context(kind_lock(conn, kind, options.wait))
        reports = [_plan_kind(conn, store, kind, now, options) for kind in kinds]
        total = sum(r.candidates for r in reports)
        if apply and options.max_delete is not None and total > options.max_delete:
            raise Refused(f"the plan would delete {total} items, more than --max-delete {options.max_delete}",
                          hint="review 'dynoctl purge' (the plan), then raise --max-delete or purge by kind")
        if apply:
            reports = [_apply_kind(conn, store, r, options, progress) for r in reports]
    return PurgeReport(apply, reports)


def _cutoff(kind: str, now: datetime, options: PurgeOptions) -> datetime | None:
    return {"sessions": now - options.older_than, "projects": now - options.project_older_than,
            "assets": now - options.grace, "quarantine": now - options.retention}[kind]


def _plan_kind(conn, store, kind, now, options) -> KindReport:
    report = KindReport(kind, applied=False, cutoff=_cutoff(kind, now, options))
    started = time.monotonic()
    if kind == "sessions":
        plan_sessions(conn, report.cutoff, report)
    elif kind == "projects":
        plan_projects(conn, report.cutoff, report)
    elif kind == "assets":
        sweep_files(conn, store, options.grace, report, apply=False, stamp="")
        sweep_dangling_rows(conn, store, report, apply=False, fix=options.fix, progress=_no_progress)
    elif kind == "quarantine":
        quarantine_pass(store, options.retention, report, apply=False)
    report.duration_s = round(time.monotonic() - started, 3)
    return report


def _apply_kind(conn, store, plan: KindReport, options, progress) -> KindReport:
    report = KindReport(plan.kind, applied=True, cutoff=plan.cutoff, candidates=plan.candidates,
                        detail=dict(plan.detail))
    started = time.monotonic()
    tables = _TABLES[plan.kind]
    report.table_bytes_before = table_bytes(conn, tables)
    try:
        if plan.candidates:
            _apply_body(conn, store, report, options, progress)
        else:
            report.skipped, report.samples = plan.skipped, plan.samples
    except DynoctlError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported per kind; others still run
        from dynoctl.db import first_line

        report.errors.append(f"{type(exc).__name__}: {first_line(exc)}")
        if getattr(conn, "broken", False):
            raise
    if report.deleted and tables:
        for table in tables:
            conn.execute(f"ANALYZE {table}")
    report.table_bytes_after = table_bytes(conn, tables)
    report.duration_s = round(time.monotonic() - started, 3)
    return report


def _apply_body(conn, store, report, options, progress) -> None:
    kind = report.kind
    if kind == "sessions":
        apply_sessions(conn, report.cutoff, report, progress)
    elif kind == "projects":
        apply_projects(conn, report.cutoff, report, store, progress)
    elif kind == "assets":
        report.candidates = 0  # recounted as the sweep confirms each candidate again
        report.detail = {}
        sweep_files(conn, store, options.grace, report, apply=True, stamp=quarantine_stamp())
        sweep_dangling_rows(conn, store, report, apply=True, fix=options.fix, progress=progress)
    elif kind == "quarantine":
        quarantine_pass(store, options.retention, report, apply=True)


def restore_running(state_dir) -> str | None:
    """Who holds the project lock, when it is a restore (read only: never taken)."""
    from dynoctl.lock import read_holder

    holder = read_holder(state_dir)
    return holder.describe() if holder and "restore" in holder.command else None


# -- where the asset files are -----------------------------------------------------


class LocalStore:
    """The assets directory on this machine: dynoctl.assetfs in-process."""

    def __init__(self, root):
        self.root = str(root)

    def _call(self, name, *args):
        from dynoctl import assetfs

        return getattr(assetfs, name)(self.root, *args)

    def scan(self):
        return self._call("scan", time.time())

    def existing(self, paths):
        return self._call("existing", paths)

    def quarantine(self, paths, stamp):
        return list(self._call("quarantine", paths, stamp))

    def remove(self, paths):
        return list(self._call("remove", paths))

    def batches(self):
        return self._call("quarantine_batches", time.time())

    def drop(self, stamp):
        return list(self._call("drop_batch", stamp))


class ContainerStore:
    """The assets volume of the server container (docker runtime): the same
    dynoctl.assetfs functions, run there by ``Runtime.exec`` with JSON lines in and
    out. Listings stream through a temporary file, never whole into memory."""

    def __init__(self, runtime, root: str):
        self.runtime, self.root = runtime, root

    def _call(self, op, args=(), paths=()):
        import json
        import tempfile
        from pathlib import Path

        from dynoctl import assetfs

        source = Path(assetfs.__file__).read_text()
        with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout:
            for p in paths:
                stdin.write((json.dumps(p) + "\n").encode())
            stdin.seek(0)
            code = self.runtime.exec("server", ["python", "-c", source, op, self.root, *args],
                                     stdin=stdin, stdout=stdout)
            if code != 0:
                raise DynoctlError(f"the asset operation '{op}' failed in the server container (exit {code})",
                                   hint="check 'dynoctl logs server' and that the server is running")
            stdout.seek(0)
            for line in stdout:
                if line.strip():
                    yield json.loads(line)

    def scan(self):
        return (tuple(r) for r in self._call("scan"))

    def existing(self, paths):
        return [r[0] for r in self._call("existing", paths=paths)]

    def quarantine(self, paths, stamp):
        return [tuple(r) for r in self._call("quarantine", [stamp], paths)]

    def remove(self, paths):
        return [tuple(r) for r in self._call("remove", paths=paths)]

    def batches(self):
        return [tuple(r) for r in self._call("batches")]

    def drop(self, stamp):
        return [tuple(r) for r in self._call("drop", [stamp])]


def store_for(runtime):
    """Where this runtime keeps asset files."""
    if runtime.name == "local":
        return LocalStore(runtime._assets_dir())
    return ContainerStore(runtime, runtime.server_env.get("ASSETS_DIR", "/data/assets"))
