"""Backups and restores for real: the local runtime's embedded PostgreSQL and server,
real archives on disk, real faults (flipped bytes, kill -9, wrong keys)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest

from dynoctl.errors import ExitStatus
from dynoctl.migrations import head
from tests.conftest import REPO, Dynoctl, free_port, make_project
from tests.integration.test_local_runtime import configure, http_status

HEAD = head(REPO / "migrations")  # the revision a backup of a migrated stack records

# A table with a column of (nearly) every type (xml needs a libxml build, which the
# pgserver wheel is not) PostgreSQL users reach for, so that a
# round trip proves each survives pg_dump -> zstd -> (age) -> pg_restore unchanged.
TYPES_TABLE = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE every_type (
  id bigserial PRIMARY KEY, small smallint, i integer, big bigint, num numeric(30, 10), r real,
  d double precision, money_ money, flag boolean, t text, vc varchar(20), ch char(5), raw bytea,
  day date, tm time, tmtz timetz, ts timestamp, tstz timestamptz, span interval, u uuid,
  j json, jb jsonb, ip inet, net cidr, mac macaddr, bits bit(8), vbits varbit(16),
  pt point, box_ box, arr int[], tarr text[], rng int4range, tsrange_ tstzrange, tsv tsvector,
  feeling mood
);
INSERT INTO every_type (small, i, big, num, r, d, money_, flag, t, vc, ch, raw, day, tm, tmtz, ts, tstz, span,
  u, j, jb, ip, net, mac, bits, vbits, pt, box_, arr, tarr, rng, tsrange_, tsv, feeling)
SELECT g, g * 1000, g * 10000000000, g / 7.0, g / 3.0, pi() * g, g * 1.25, g % 2 = 0,
  repeat(E'é\\t"\\n,\\\\', g % 5) || g, 'v' || g, 'c' || (g % 10), decode(md5(g::text), 'hex'),
  date '2020-02-29' + g, time '23:59:59.999999', timetz '12:00+05:30', timestamp '1999-12-31 23:59:59' + g * interval '1 h',
  now() - g * interval '1 day', g * interval '1 day 2 hours', md5(g::text)::uuid,
  json_build_object('g', g, 's', 'x"y'), jsonb_build_object('nested', jsonb_build_array(g, null, true)),
  '10.0.0.1'::inet + g, '192.168.0.0/16', '08:00:2b:01:02:03',
  (g % 256)::bit(8), B'1010', point(g, -g), box(point(0, 0), point(g, g)), ARRAY[g, NULL, -g],
  ARRAY['a', NULL, E'\\u00e9'], int4range(g, g + 10), tstzrange(now(), NULL), to_tsvector('english', 'the quick brown fox ' || g),
  (ARRAY['sad', 'ok', 'happy']::mood[])[1 + g % 3]
FROM generate_series(1, 300) g;
INSERT INTO every_type (t) VALUES (NULL), ('');
"""


@pytest.fixture
def stack():
    project = make_project("dyno-backup-")
    api_port, db_port = free_port(), free_port()
    run = configure(project, api_port, db_port)
    run.api = f"http://127.0.0.1:{api_port}"
    assert local(run, "up").exit_code == 0
    run.url = _url(project)
    yield run
    local(run, "down", "--volumes", "--yes")
    shutil.rmtree(project, ignore_errors=True)


def local(run: Dynoctl, *args, **kw):
    return run("--runtime", "local", *args, **kw)


def local_json(run: Dynoctl, *args):
    result = local(run, "--json", *args)
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def _url(project: Path, dbname: str = "pm_app") -> str:
    from dynoctl.backup import psycopg_url
    from dynoctl.config import Settings
    from dynoctl.runtime.local import LocalRuntime

    return psycopg_url(LocalRuntime(Settings(project)).database_url(), dbname)


def assets_root(run: Dynoctl) -> Path:
    return run.project / ".dyno" / "assets"


def add_data(run: Dynoctl, assets: int = 6, types: bool = True) -> None:
    """Users, a project, tasks and asset rows with their files (two share a content)."""
    with psycopg.connect(run.url) as conn:
        if types:
            conn.execute(TYPES_TABLE)
        user, project = uuid.uuid4(), uuid.uuid4()
        conn.execute("INSERT INTO users (id, email, password_hash) VALUES (%s, %s, 'x')", (user, f"{user}@example.com"))
        conn.execute("INSERT INTO projects (id, owner_id, name) VALUES (%s, %s, 'p')", (project, user))
        conn.execute("INSERT INTO tasks (id, project_id, title) SELECT gen_random_uuid(), %s, 'task ' || g"
                     " FROM generate_series(1, 50) g", (project,))
        for i in range(assets):
            data = b"shared content" if i >= assets - 2 else os.urandom(3000 + i)
            asset = uuid.uuid4()
            storage = f"{asset.hex[:2]}/{asset}"
            path = assets_root(run) / storage
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            conn.execute("INSERT INTO assets (id, project_id, original_name, content_type, size, sha256, storage_path)"
                         " VALUES (%s, %s, 'f', 'application/octet-stream', %s, %s, %s)",
                         (asset, project, len(data), hashlib.sha256(data).hexdigest(), storage))


def table_checksums(url: str) -> dict[str, str]:
    """md5 of every row of every table, in primary-key order, as text."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()]
        return {t: conn.execute(f'SELECT md5(coalesce(string_agg(x::text, \'|\' ORDER BY x::text), \'\')) FROM "{t}" x')
                .fetchone()[0] for t in tables}


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def register(api: str) -> int:
    body = json.dumps({"email": f"{uuid.uuid4().hex[:8]}@example.com", "password": "correct horse battery"}).encode()
    request = urllib.request.Request(f"{api}/auth/register", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def make_backup(run: Dynoctl, *args) -> dict:
    result, data = local_json(run, "backup", *args)
    assert result.exit_code == 0, result.stderr
    return data


def backup_files(run: Dynoctl) -> list[str]:
    return sorted(os.listdir(run.project / ".dyno" / "backups"))


def test_round_trip_every_column_type_and_assets(stack):
    add_data(stack)
    before_tables, before_assets = table_checksums(stack.url), tree(assets_root(stack))
    data = make_backup(stack)
    assert data["assets"] == 6 and data["distinct_assets"] == 5 and data["revision"] == HEAD
    archive = Path(data["path"])
    assert archive.stat().st_mode & 0o777 == 0o600
    listing = subprocess.run(["tar", "-tf", archive], capture_output=True, text=True, check=True).stdout.split()
    assert listing[0] == "dump.pgdump.zst" and listing[-1] == "manifest.json"
    assert len([n for n in listing if n.startswith("assets/")]) == 5  # each distinct content once
    assert _two_jobs(archive)  # small tables, none most of the data: unpacked for pg_restore -j2

    # Change everything, then restore.
    with psycopg.connect(stack.url) as conn:
        conn.execute("DELETE FROM every_type WHERE id % 2 = 0")
        conn.execute("UPDATE tasks SET title = 'changed'")
    victim = next(p for p in assets_root(stack).rglob("*") if p.is_file())
    victim.write_bytes(b"changed")
    (assets_root(stack) / "zz").mkdir()
    (assets_root(stack) / "zz" / "new").write_bytes(b"new")
    assert table_checksums(stack.url) != before_tables

    result, restored = local_json(stack, "restore", data["name"], "--yes")
    assert result.exit_code == 0, result.stderr
    assert restored["server_ready"] is True and restored["migrated_to"] == HEAD
    assert table_checksums(stack.url) == before_tables
    assert tree(assets_root(stack)) == before_assets
    assert http_status(f"{stack.api}/ready") == 200
    assert register(stack.api) == 201  # the server's (least-privilege) login can write the restored database

    # The previous state is the safety copy: --rollback brings it back, assets included.
    assert local(stack, "restore", "--rollback").exit_code == ExitStatus.REFUSED  # no TTY, no --yes
    assert local(stack, "restore", "--rollback", "--yes").exit_code == 0
    assert table_checksums(stack.url) != before_tables
    assert (assets_root(stack) / "zz" / "new").read_bytes() == b"new"
    assert http_status(f"{stack.api}/ready") == 200

    # Runs are in the history.
    _, hist = local_json(stack, "history")
    assert {"backup", "restore"} <= set(hist["last_success"])

    # What the rollback swapped out (the restored database and its assets) is kept until
    # pruned: not while young, then (--keep-safety-days 0) database and asset tree are
    # dropped, and there is nothing left to roll back to.
    kept = [d for d in _databases(stack.url) if "_before_restore_" in d or "_rolled_back_" in d]
    assert len(kept) == 1 and "_rolled_back_" in kept[0]
    trees = sorted(p.name for p in assets_root(stack).parent.glob(f"{assets_root(stack).name}.*"))
    assert len(trees) == 1, trees
    result, young = local_json(stack, "backup", "prune", "--apply")
    assert result.exit_code == 0 and young["safety_copies"] == []
    result, plan = local_json(stack, "backup", "prune", "--keep-safety-days", "0")
    assert sorted(c["kind"] for c in plan["safety_copies"]) == ["assets", "database"]
    assert len([d for d in _databases(stack.url) if "_before_restore_" in d or "_rolled_back_" in d]) == 1  # a plan
    result, done = local_json(stack, "backup", "prune", "--keep-safety-days", "0", "--apply")
    assert result.exit_code == 0, result.stderr
    assert [d for d in _databases(stack.url) if "_before_restore_" in d or "_rolled_back_" in d] == []
    assert list(assets_root(stack).parent.glob(f"{assets_root(stack).name}.*")) == []
    assert table_checksums(stack.url) != before_tables and http_status(f"{stack.api}/ready") == 200
    # A restore's own safety copy goes the same way, and then --rollback has nothing to use.
    assert local(stack, "restore", data["name"], "--yes").exit_code == 0
    result, done = local_json(stack, "backup", "prune", "--keep-safety-days", "0", "--apply")
    assert sorted(c["kind"] for c in done["safety_copies"]) == ["assets", "database"]
    assert [d for d in _databases(stack.url) if "_before_restore_" in d] == []
    assert table_checksums(stack.url) == before_tables
    assert local(stack, "restore", "--rollback", "--yes").exit_code == ExitStatus.REFUSED


def _two_jobs(archive: Path) -> bool:
    """Whether a local restore unpacks this archive for two pg_restore jobs (else it streams)."""
    from dynoctl.restore import _unpacks

    local_runtime = type("Local", (), {"name": "local"})()
    return _unpacks(local_runtime, read_manifest_of(str(archive)))


def test_a_table_holding_most_of_the_data_is_streamed_into_one_job(stack):
    add_data(stack, assets=2, types=False)
    with psycopg.connect(stack.url) as conn:
        project = conn.execute("SELECT id FROM projects LIMIT 1").fetchone()[0]
        conn.execute("INSERT INTO tasks (id, project_id, title, description) SELECT gen_random_uuid(), %s,"
                     " 'bulk ' || g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g", (project,))
    before = table_checksums(stack.url)
    data = make_backup(stack)
    sizes = read_manifest_of(data["path"])["database"]["table_bytes"]
    assert max(sizes, key=sizes.get) == "tasks" and sizes["tasks"] > 0.75 * sum(sizes.values())
    assert not _two_jobs(Path(data["path"]))
    with psycopg.connect(stack.url) as conn:
        conn.execute("DELETE FROM tasks WHERE title LIKE 'bulk 1%'")
    result = local(stack, "restore", data["name"], "--yes")
    assert result.exit_code == 0, result.stderr
    assert table_checksums(stack.url) == before
    assert list(Path(data["path"]).parent.glob(".*.pgdump.tmp")) == []  # nothing was unpacked


def read_manifest_of(path: str) -> dict:
    from dynoctl.backup import read_manifest

    return read_manifest(Path(path))


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def _member_offset(archive: Path, name: str) -> int:
    import tarfile

    with tarfile.open(archive) as tar:
        return tar.getmember(name).offset_data


def test_flipped_byte_is_named_and_restore_refuses(stack):
    add_data(stack, types=False)
    data = make_backup(stack)
    archive = Path(data["path"])
    ok, verified = local_json(stack, "backup", "verify", data["name"], "--restore-test")
    assert ok.exit_code == 0, ok.stderr
    assert verified["toc_entries"] > 10 and all(v["expected"] == v["restored"] for v in verified["restore_test"].values())

    before = table_checksums(stack.url)
    _flip(archive, _member_offset(archive, "dump.pgdump.zst") + 100)
    bad = local(stack, "backup", "verify", data["name"])
    assert bad.exit_code == ExitStatus.FAILED
    assert "dump.pgdump.zst: checksum mismatch" in bad.stderr
    refused = local(stack, "restore", data["name"], "--yes")
    assert refused.exit_code == ExitStatus.FAILED and "dump.pgdump.zst: checksum mismatch" in refused.stderr
    assert table_checksums(stack.url) == before
    # The dump's checksum is taken while it is unpacked: nothing of that is left.
    assert not list(archive.parent.glob(".*.pgdump.tmp"))
    assert not any(d.startswith("pm_app_restoring_") for d in _databases(_url(stack.project, "postgres")))

    _flip(archive, _member_offset(archive, "dump.pgdump.zst") + 100)  # repaired
    asset = next(n for n in subprocess.run(["tar", "-tf", archive], capture_output=True, text=True).stdout.split()
                 if n.startswith("assets/"))
    _flip(archive, _member_offset(archive, asset))
    bad = local(stack, "backup", "verify", data["name"])
    assert bad.exit_code == ExitStatus.FAILED and f"{asset}: checksum mismatch" in bad.stderr

    # Truncated and missing archives: one clear line each.
    truncated = archive.with_name("dyno-truncated.tar")
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    cut = local(stack, "backup", "verify", truncated.name)
    assert cut.exit_code == ExitStatus.FAILED and "truncated" in cut.stderr
    missing = local(stack, "backup", "verify", "dyno-nothing.tar")
    assert missing.exit_code == ExitStatus.USAGE and "no backup at" in missing.stderr
    _, listed = local_json(stack, "backup", "list")
    assert any(b["error"] for b in listed if b["name"] == truncated.name)


def test_encryption_round_trip_and_wrong_key(stack, tmp_path):
    import pyrage

    add_data(stack, types=False)
    identity = pyrage.x25519.Identity.generate()
    (tmp_path / "id.txt").write_text(f"{identity}\n")
    other = tmp_path / "other.txt"
    other.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    before_tables, before_assets = table_checksums(stack.url), tree(assets_root(stack))

    refused = local(stack, "backup", "--with-secrets")
    assert refused.exit_code == ExitStatus.USAGE and "requires encryption" in refused.stderr
    key_file = stack.project / ".dyno" / "keys" / "jwt-keys.json"
    original_keys = json.dumps({p: {"signing": f"{p}-1", "keys": [{"kid": f"{p}-1", "secret": "s" * 40 + p}]}
                                for p in ("access", "refresh")})
    key_file.write_text(original_keys)
    data = make_backup(stack, "--recipient", str(identity.to_public()), "--with-secrets")
    archive = Path(data["path"])
    raw = archive.read_bytes()
    assert b"every_type" not in raw and b"task 1" not in raw and b"shared content" not in raw
    assert b"JWT_ACCESS_TOKEN_SECRET" not in raw  # the env files are in, encrypted

    wrong = local(stack, "restore", data["name"], "--identity", str(other), "--yes")
    assert wrong.exit_code == ExitStatus.REFUSED and "does not open this backup" in wrong.stderr
    assert [ln for ln in wrong.stderr.splitlines() if ln.startswith("error:")] == ["error: the given key does not open this backup"]
    nokey = local(stack, "restore", data["name"], "--yes")
    assert nokey.exit_code == ExitStatus.USAGE and "encrypted" in nokey.stderr
    assert table_checksums(stack.url) == before_tables

    with psycopg.connect(stack.url) as conn:
        conn.execute("DELETE FROM tasks")
    key_file.write_text(original_keys.replace("-1", "-2"))
    ok = local(stack, "restore", data["name"], "--identity", str(tmp_path / "id.txt"), "--with-secrets", "--yes")
    assert ok.exit_code == 0, ok.stderr
    assert table_checksums(stack.url) == before_tables and tree(assets_root(stack)) == before_assets
    assert key_file.read_text() == original_keys  # tokens the old machine signed verify again
    assert any("-2" in p.read_text() for p in key_file.parent.glob("jwt-keys.json.bak-*"))  # the replaced one kept
    review = stack.project / "stack" / "env" / "server.local.env.from-backup"
    assert review.read_text() == (stack.project / "stack" / "env" / "server.local.env").read_text()
    assert review.stat().st_mode & 0o777 == 0o600
    assert http_status(f"{stack.api}/ready") == 200

    # A passphrase: memory-hard, and never on the command line.
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery staple\n")
    data = make_backup(stack, "--passphrase-file", str(pw))
    bad = local(stack, "backup", "verify", data["name"], env={"DYNO_BACKUP_PASSPHRASE": "wrong wrong wrong"})
    assert bad.exit_code == ExitStatus.REFUSED and "wrong passphrase" in bad.stderr
    good = local(stack, "backup", "verify", data["name"], "--passphrase-file", str(pw), "--restore-test")
    assert good.exit_code == 0, good.stderr


def test_plain_sql_and_custom_format_dumps_restore(stack, tmp_path):
    from dynoctl.config import Settings
    from dynoctl.runtime.local import LocalRuntime

    add_data(stack, types=True, assets=0)
    before = table_checksums(stack.url)
    runtime = LocalRuntime(Settings(stack.project))
    sql_file, custom = tmp_path / "backup.sql", tmp_path / "backup.dump"
    with open(sql_file, "wb") as out:  # the platform's documented command: pg_dump -U postgres pm_app > backup.sql
        assert runtime.exec("db", ["pg_dump", "-U", "postgres", "pm_app"], stdout=out) == 0
    with open(custom, "wb") as out:
        assert runtime.exec("db", ["pg_dump", "-Fc", "pm_app"], stdout=out) == 0
    for dump in (sql_file, custom):
        with psycopg.connect(stack.url) as conn:
            conn.execute("DELETE FROM every_type")
        result = local(stack, "restore", str(dump), "--yes")
        assert result.exit_code == 0, result.stderr
        assert table_checksums(stack.url) == before
    assert http_status(f"{stack.api}/ready") == 200


def _dynoctl_process(project: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dynoctl", "--project-dir", str(project), "--runtime", "local",
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "DYNO_RUNTIME": "local"})


def _databases(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()]


def test_kill_9_during_restore_leaves_the_original_serving(stack):
    add_data(stack, types=False, assets=2)
    with psycopg.connect(stack.url) as conn:  # enough rows that pg_restore takes a moment
        conn.execute("CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 400000) g")
        conn.execute("CREATE INDEX ON bulk (h)")
    data = make_backup(stack)
    with psycopg.connect(stack.url) as conn:
        conn.execute("DELETE FROM tasks WHERE title = 'task 1'")
    before, before_assets = table_checksums(stack.url), tree(assets_root(stack))
    admin = _url(stack.project, "postgres")

    for phase in ("restoring", "later"):
        child = _dynoctl_process(stack.project, "restore", data["name"], "--yes")
        deadline = time.monotonic() + 60
        while not any(d.startswith("pm_app_restoring_") for d in _databases(admin)):
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        if phase == "later":
            time.sleep(0.3)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert http_status(f"{stack.api}/ready") == 200
        assert table_checksums(stack.url) == before
        assert tree(assets_root(stack)) == before_assets

    # The next run clears what the killed ones left and restores.
    assert local(stack, "restore", data["name"], "--yes").exit_code == 0
    assert not any(d.startswith("pm_app_restoring_") for d in _databases(admin))
    assert not list(assets_root(stack).parent.glob("assets.restoring-*"))
    assert table_checksums(stack.url) != before  # 'task 1' is back
    assert http_status(f"{stack.api}/ready") == 200


def test_backup_faults_leave_nothing_partial(stack, tmp_path):
    add_data(stack, types=False, assets=1)
    # kill -9 mid-backup: a temp file at most, removed by the next run.
    with psycopg.connect(stack.url) as conn:
        conn.execute("CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 600000) g")
    backups = stack.project / ".dyno" / "backups"
    child = _dynoctl_process(stack.project, "backup")
    deadline = time.monotonic() + 60
    while not (backups.exists() and list(backups.glob(".dyno-*.tmp"))):
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not list(backups.glob("dyno-*.tar"))
    _, listed = local_json(stack, "backup", "list")
    assert listed == []
    make_backup(stack)
    assert not list(backups.glob(".dyno-*")) and len(list(backups.glob("dyno-*.tar"))) == 1

    # Not writable / not creatable output.
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = local(stack, "backup", "--output", str(blocker / "sub"))
    assert bad.exit_code == ExitStatus.REFUSED and "backup directory" in bad.stderr

    # Not enough space: refused up front.
    if os.geteuid() == 0 and shutil.which("mount"):
        small = tmp_path / "small"
        small.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)]).returncode == 0:
            try:
                full = local(stack, "backup", "--output", str(small))
                assert full.exit_code == ExitStatus.REFUSED and "not enough free space" in full.stderr
                assert os.listdir(small) == []
            finally:
                subprocess.run(["umount", str(small)])

    # Metrics: gauges for backup and verify side by side.
    metrics = tmp_path / "dyno.prom"
    data = make_backup(stack, "--metrics-file", str(metrics))
    assert local(stack, "backup", "verify", data["name"], "--metrics-file", str(metrics)).exit_code == 0
    text = metrics.read_text()
    assert f"dyno_backup_last_size_bytes {data['size']}" in text
    assert "dyno_backup_last_success_timestamp_seconds" in text and "dyno_verify_last_run_success 1" in text

    # Stack not running: unreachable, nothing written.
    assert local(stack, "down").exit_code == 0
    count = len(list(backups.iterdir()))
    down = local(stack, "backup")
    assert down.exit_code == ExitStatus.UNREACHABLE
    assert len(list(backups.iterdir())) == count


def test_a_swap_interrupted_between_its_steps_is_finished_by_the_next_restore(stack):
    """kill -9 between 'ALLOW_CONNECTIONS false' and the rename transaction (a window
    of milliseconds) would leave pm_app refusing connections: the journal written just
    before lets the next restore (or rollback) put it back in service first."""
    add_data(stack, types=False, assets=1)
    data = make_backup(stack)
    admin = _url(stack.project, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("ALTER DATABASE pm_app ALLOW_CONNECTIONS false")
    journal = stack.project / ".dyno" / "restore-swap.json"
    journal.write_text(json.dumps({"phase": "swap", "incoming": "pm_app_restoring_x", "retired": "pm_app_before_restore_x",
                                   "assets_staged": False, "stamp": "x"}))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(stack.url).close()
    assert local(stack, "restore", data["name"], "--yes").exit_code == 0
    assert not journal.exists()
    assert http_status(f"{stack.api}/ready") == 200
    with psycopg.connect(stack.url) as conn:
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 50


def test_the_dump_server_process_gets_the_backup_priority(stack):
    """The backup's connection holds its snapshot in a transaction, and PostgreSQL reads
    pg_stat_activity once per transaction: pg_dump's session, opened afterwards, must
    still be found and lowered (it was not, and ran at the app's priority)."""
    import threading

    import psutil

    from dynoctl import backup, priority
    from dynoctl.config import Settings
    from dynoctl.runtime.local import LocalRuntime

    runtime = LocalRuntime(Settings(stack.project))
    with psycopg.connect(stack.url) as conn:
        backup._snapshot(conn)
        conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()  # the view is now cached
        with psycopg.connect(stack.url, application_name="pg_dump") as dump_session:
            dump_pid = dump_session.info.backend_pid
            governor = priority.Governor()
            backup._lower_dump_backend(runtime, conn, governor, threading.Event())
            assert dump_pid in governor.extra
            assert conn.info.backend_pid in governor.extra
            assert psutil.Process(dump_pid).nice() == 19
