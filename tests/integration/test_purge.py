"""dynoctl purge on real data: embedded PostgreSQL, real files, the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from dynoctl import assetfs, purge
from dynoctl.errors import Busy, Refused
from dynoserver import storage
from tests.server.helpers import migrate

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def db(postgres, request):
    url = postgres.create_database("purge_" + request.node.name[:40].lower().replace("[", "_").replace("]", ""))
    migrate(url)
    return url


@pytest.fixture
def assets(tmp_path):
    path = tmp_path / "assets"
    path.mkdir()
    return path


def sql(url, statement, params=None):
    with psycopg.connect(purge.libpq_url(url), autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else None


def user(url) -> uuid.UUID:
    uid = uuid.uuid4()
    sql(url, "INSERT INTO users (id, email, password_hash) VALUES (%s, %s, 'x')", (uid, f"{uid}@example.test"))
    return uid


def session(url, uid, expires_at, revoked_at=None) -> uuid.UUID:
    sid = uuid.uuid4()
    sql(url, "INSERT INTO sessions (id, user_id, token_hash, expires_at, revoked_at) VALUES (%s,%s,'h',%s,%s)",
        (sid, uid, expires_at, revoked_at))
    return sid


def project(url, uid, archived_at=None) -> uuid.UUID:
    pid = uuid.uuid4()
    sql(url, "INSERT INTO projects (id, owner_id, name, archived_at) VALUES (%s,%s,'p',%s)", (pid, uid, archived_at))
    return pid


def asset(url, assets_dir: Path, pid, *, with_file=True, age_h: float = 48) -> str:
    aid = uuid.uuid4()
    path = storage.storage_path_for(aid)
    sql(url, "INSERT INTO assets (id, project_id, original_name, content_type, size, sha256, storage_path) "
             "VALUES (%s,%s,'f','text/plain',3,'0',%s)", (aid, pid, path))
    if with_file:
        put_file(assets_dir, path, age_h)
    return path


def put_file(assets_dir: Path, rel: str, age_h: float, data: bytes = b"abc") -> Path:
    target = assets_dir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    when = time.time() - age_h * 3600
    os.utime(target, (when, when))
    return target


def counts(url):
    return {t: sql(url, f"SELECT count(*) FROM {t}")[0][0] for t in ("users", "sessions", "projects", "tasks", "assets")}


def tree_checksum(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def options(**kw):
    return purge.PurgeOptions(now=NOW, **kw)


# -- sessions ---------------------------------------------------------------------


def test_sessions_boundary_plan_equals_apply(db):
    uid = user(db)
    cutoff = NOW - timedelta(days=7)
    at_cutoff = session(db, uid, cutoff)  # expiring exactly at the cutoff: kept
    just_before = session(db, uid, cutoff - timedelta(microseconds=1))
    revoked_old = session(db, uid, NOW + timedelta(days=30), revoked_at=cutoff - timedelta(seconds=1))
    revoked_recent = session(db, uid, NOW + timedelta(days=30), revoked_at=cutoff + timedelta(seconds=1))
    alive = session(db, uid, NOW + timedelta(days=1))
    for _ in range(50):
        session(db, uid, cutoff - timedelta(days=1))

    before = counts(db)
    plan = purge.run(db, None, ["sessions"], options(), apply=False)
    assert counts(db) == before  # a plan deletes nothing
    assert plan.kinds[0].candidates == 52
    done = purge.run(db, None, ["sessions"], options(), apply=True)
    assert done.kinds[0].deleted == plan.kinds[0].candidates == 52
    left = {r[0] for r in sql(db, "SELECT id FROM sessions")}
    assert left == {at_cutoff, revoked_recent, alive}
    assert just_before not in left and revoked_old not in left
    assert done.status == "ok" and done.kinds[0].batches >= 1


def test_rows_the_app_holds_are_skipped_not_waited_for(db):
    uid = user(db)
    held = session(db, uid, NOW - timedelta(days=30))
    others = [session(db, uid, NOW - timedelta(days=30, seconds=i)) for i in range(1, 40)]
    app = psycopg.connect(purge.libpq_url(db))
    try:
        app.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (held,))  # an open transaction
        done = purge.run(db, None, ["sessions"], options(), apply=True)
        assert done.status == "ok" and done.kinds[0].deleted == len(others)
        assert done.kinds[0].detail["batches_meeting_app_locks"] >= 1
    finally:
        app.rollback()
        app.close()
    assert {r[0] for r in sql(db, "SELECT id FROM sessions")} == {held}


def test_second_concurrent_run_is_busy_and_changes_nothing(db):
    uid = user(db)
    session(db, uid, NOW - timedelta(days=30))
    holder = psycopg.connect(purge.libpq_url(db), autocommit=True)
    try:
        with purge.kind_lock(holder, "sessions"):
            with pytest.raises(Busy):
                purge.run(db, None, ["sessions"], options(), apply=True)
            assert counts(db)["sessions"] == 1
    finally:
        holder.close()
    assert purge.run(db, None, ["sessions"], options(), apply=True).kinds[0].deleted == 1


def test_wait_queues_behind_a_running_purge(db):
    import threading

    uid = user(db)
    session(db, uid, NOW - timedelta(days=30))
    holder = psycopg.connect(purge.libpq_url(db), autocommit=True)
    taken, release = threading.Event(), threading.Event()

    def hold():
        with purge.kind_lock(holder, "sessions"):
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        taken.wait(10)
        threading.Timer(1.0, release.set).start()  # the first run ends while we queue
        done = purge.run(db, None, ["sessions"], options(wait=60), apply=True)
        assert done.kinds[0].deleted == 1
    finally:
        release.set()
        thread.join()
        holder.close()


def test_max_delete_refuses_before_deleting(db):
    uid = user(db)
    for _ in range(5):
        session(db, uid, NOW - timedelta(days=30))
    with pytest.raises(Refused):
        purge.run(db, None, ["sessions"], options(max_delete=4), apply=True)
    assert counts(db)["sessions"] == 5
    assert purge.run(db, None, ["sessions"], options(max_delete=5), apply=True).kinds[0].deleted == 5


# -- projects ---------------------------------------------------------------------


def test_projects_archived_old_go_with_their_tasks_and_files(db, assets):
    uid = user(db)
    old = project(db, uid, archived_at=NOW - timedelta(days=91))
    sql(db, "INSERT INTO tasks (id, project_id, title) VALUES (%s, %s, 't')", (uuid.uuid4(), old))
    old_file = asset(db, assets, old)
    recent = project(db, uid, archived_at=NOW - timedelta(days=89))
    live = project(db, uid)
    flipped = project(db, uid, archived_at=NOW - timedelta(days=200))
    flipped_file = asset(db, assets, flipped)
    store = purge.LocalStore(assets)

    plan = purge.run(db, store, ["projects"], options(), apply=False)
    assert plan.kinds[0].candidates == 2
    # Unarchived after the plan was made: kept, with its files.
    sql(db, "UPDATE projects SET archived_at = NULL WHERE id = %s", (flipped,))
    done = purge.run(db, store, ["projects"], options(), apply=True)
    assert done.kinds[0].deleted == 1
    assert {r[0] for r in sql(db, "SELECT id FROM projects")} == {recent, live, flipped}
    assert counts(db)["tasks"] == 0
    assert not (assets / old_file).exists() and (assets / flipped_file).exists()
    assert done.kinds[0].files_deleted == 1 and done.kinds[0].bytes_freed == 3


# -- assets -----------------------------------------------------------------------


def test_assets_boundaries_unknown_paths_and_quarantine(db, assets):
    uid = user(db)
    pid = project(db, uid)
    kept_with_row = asset(db, assets, pid)
    fresh_orphan = put_file(assets, storage.storage_path_for(uuid.uuid4()), age_h=0)
    old_orphan = storage.storage_path_for(uuid.uuid4())
    put_file(assets, old_orphan, age_h=25)
    old_part = storage.storage_path_for(uuid.uuid4()) + ".part"
    put_file(assets, old_part, age_h=25)
    unknown = [put_file(assets, "README.txt", 100), put_file(assets, "ab/not-a-uuid", 100),
               put_file(assets, "zz/" + str(uuid.uuid4()), 100)]
    missing = asset(db, assets, pid, with_file=False)
    store = purge.LocalStore(assets)
    tree, rows = tree_checksum(assets), counts(db)

    plan = purge.run(db, store, ["assets"], options(), apply=False)
    assert tree_checksum(assets) == tree and counts(db) == rows  # a plan changes nothing
    k = plan.kinds[0]
    assert k.skipped["unknown path (never touched)"] == 3
    assert k.skipped["row without file (pass --fix)"] == 1 and k.samples["row without file (pass --fix)"] == [missing]

    assert k.candidates == 2  # the 25-hour-old orphan and the abandoned .part
    done = purge.run(db, store, ["assets"], options(), apply=True)
    k = done.kinds[0]
    assert k.quarantined == 2  # the 25-hour-old orphan and the abandoned .part
    assert fresh_orphan.exists() and (assets / kept_with_row).exists()
    assert all(p.exists() for p in unknown)
    assert not (assets / old_orphan).exists() and not (assets / old_part).exists()
    quarantined = list((assets / assetfs.QUARANTINE).rglob("*-*"))
    assert {p.name for p in quarantined if p.is_file()} == {Path(old_orphan).name, Path(old_part).name}
    assert counts(db)["assets"] == 2  # the missing-file row stays without --fix

    fixed = purge.run(db, store, ["assets"], options(fix=True), apply=True)
    assert fixed.kinds[0].deleted == 1 and counts(db)["assets"] == 1

    # The quarantine: plan, then apply once the retention has passed.
    q = purge.run(db, store, ["quarantine"], options(), apply=True)
    assert q.kinds[0].deleted == 0 and q.kinds[0].skipped["within retention"] == 2
    q = purge.run(db, store, ["quarantine"], options(retention=timedelta(0)), apply=True)
    assert q.kinds[0].deleted == 2 and not list((assets / assetfs.QUARANTINE).rglob("*-*"))


def test_grace_below_one_hour_is_refused(db, assets):
    with pytest.raises(Refused):
        purge.run(db, purge.LocalStore(assets), ["assets"], options(grace=timedelta(minutes=59)), apply=False)


def test_dangling_rows_deleted_then_files_quarantined(db, assets):
    uid = user(db)
    pid = project(db, uid)
    path = asset(db, assets, pid)
    with psycopg.connect(purge.libpq_url(db), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # a partial restore bypassed the FKs
        conn.execute("DELETE FROM projects WHERE id = %s", (pid,))
    done = purge.run(db, purge.LocalStore(assets), ["assets"], options(), apply=True)
    assert done.kinds[0].deleted == 1 and done.kinds[0].quarantined == 1
    assert counts(db)["assets"] == 0 and not (assets / path).exists()


def test_layout_regex_matches_the_server():
    assert assetfs.STORAGE_PATH.pattern == storage.STORAGE_PATH.pattern
    assert assetfs.PARTIAL_SUFFIX == storage.PARTIAL_SUFFIX


# -- crash safety -----------------------------------------------------------------


KILL_SCRIPT = """
import sys
from datetime import datetime, timezone
from dynoctl import purge
purge.BATCH_START = purge.BATCH_MAX = purge.BATCH_MIN = 1   # many tiny batches: a window to kill in
class Slow(purge.LocalStore):
    def remove(self, paths):
        print("removing", flush=True)
        import time; time.sleep(0.05)
        return super().remove(paths)
purge.run(sys.argv[1], Slow(sys.argv[2]), ["projects"],
          purge.PurgeOptions(now=datetime(2026, 6, 1, 12, tzinfo=timezone.utc)), apply=True)
"""


def test_kill_9_mid_run_then_rerun_leaves_no_row_without_its_file(db, assets):
    uid = user(db)
    for _ in range(3):
        pid = project(db, uid, archived_at=NOW - timedelta(days=100))
        for _ in range(20):
            asset(db, assets, pid)
    keep = project(db, uid)
    kept = [asset(db, assets, keep) for _ in range(3)]
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, db, str(assets)], stdout=subprocess.PIPE, text=True)
    for _ in range(5):
        child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert counts(db)["assets"] < 63  # it was killed mid-way

    def no_row_without_file():
        return all((assets / p).exists() for (p,) in sql(db, "SELECT storage_path FROM assets"))

    assert no_row_without_file()
    done = purge.run(db, purge.LocalStore(assets), ["projects"], options(), apply=True)  # the lock died with it
    assert done.status == "ok"
    assert counts(db)["projects"] == 1 and counts(db)["assets"] == 3
    assert no_row_without_file() and all((assets / p).exists() for p in kept)
    # Whatever the killed run had left between row and file is an orphan for the sweep.
    leftovers = [e for e in assetfs.scan(str(assets), time.time()) if e[0] not in kept]
    assert all(e[1] == "stored" for e in leftovers)


# -- the CLI ------------------------------------------------------------------------


def test_cli_json_schema_exit_codes_and_history(db, dynoctl, monkeypatch):
    from dynoctl.runtime.local import LocalRuntime

    monkeypatch.setattr(LocalRuntime, "database_url", lambda self, dbname=None: db)
    uid = user(db)
    session(db, uid, datetime.now(timezone.utc) - timedelta(days=30))
    result = dynoctl("--runtime", "local", "--json", "purge", "sessions")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"applied", "kinds", "status"} and doc["applied"] is False and doc["status"] == "ok"
    kind = doc["kinds"][0]
    assert set(kind) >= {"kind", "applied", "cutoff", "candidates", "deleted", "quarantined", "bytes_freed",
                         "skipped", "batches", "duration_s", "table_bytes_before", "table_bytes_after", "errors"}
    assert kind["kind"] == "sessions" and kind["candidates"] == 1 and kind["deleted"] == 0

    assert dynoctl("--runtime", "local", "purge", "sessions", "--apply", "--max-delete", "0").exit_code == 3
    result = dynoctl("--runtime", "local", "--json", "purge", "sessions", "--apply")
    assert result.exit_code == 0 and json.loads(result.stdout)["kinds"][0]["deleted"] == 1
    assert dynoctl("--runtime", "local", "purge", "--older-than", "3d").exit_code == 2
    holder = psycopg.connect(purge.libpq_url(db), autocommit=True)
    try:
        with purge.kind_lock(holder, "sessions"):
            busy = dynoctl("--runtime", "local", "purge", "sessions", "--apply")
            assert busy.exit_code == 75 and "another purge of sessions" in busy.stderr
    finally:
        holder.close()

    history = json.loads(dynoctl("--json", "history", "purge").stdout)
    assert [r["status"] for r in history["runs"]] == ["ok", "refused", "ok", "busy"]
    assert history["runs"][2]["summary"]["deleted"] == 1 and "purge-sessions" in history["last_success"]


def test_durations():
    from dynoctl.commands.purge import parse_duration
    from dynoctl.errors import UsageError

    assert parse_duration("7d") == timedelta(days=7) and parse_duration("1d12h") == timedelta(hours=36)
    for bad in ("7", "d", "7x", "-1d", "7d junk"):
        with pytest.raises(UsageError):
            parse_duration(bad)


def test_local_runtime_end_to_end(tmp_path):
    """The real local stack: `up`, an orphan file in the runtime's assets dir, a stale
    session; `purge all` plans, `--apply` deletes and quarantines."""
    from tests.integration.test_local_runtime import configure
    from tests.conftest import free_port, make_project
    import shutil

    project = make_project("dyno-purge-local-")
    run = configure(project, free_port(), free_port())
    try:
        assert run("--runtime", "local", "up").exit_code == 0
        from dynoctl.config import Settings
        from dynoctl.runtime import get_runtime

        runtime = get_runtime(Settings(project_dir=project, runtime="local"))
        url, store = runtime.database_url(), purge.store_for(runtime)
        orphan = storage.storage_path_for(uuid.uuid4())
        put_file(Path(store.root), orphan, age_h=30)
        session(url, user(url), datetime.now(timezone.utc) - timedelta(days=30))

        result = run("--runtime", "local", "--json", "purge")
        assert result.exit_code == 0, result.stderr
        plan = {k["kind"]: k["candidates"] for k in json.loads(result.stdout)["kinds"]}
        assert plan == {"sessions": 1, "projects": 0, "assets": 1}
        result = run("--runtime", "local", "--json", "purge", "--apply")
        assert result.exit_code == 0, result.stderr
        done = {k["kind"]: k for k in json.loads(result.stdout)["kinds"]}
        assert done["sessions"]["deleted"] == 1 and done["assets"]["quarantined"] == 1
        assert not (Path(store.root) / orphan).exists()
    finally:
        run("--runtime", "local", "down", "--volumes", "--yes")
        shutil.rmtree(project, ignore_errors=True)
