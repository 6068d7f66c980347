"""Backup and restore on a generated database, against plain pg_dump/pg_restore.

One local-runtime stack (embedded PostgreSQL 16 + the real server) in a throwaway
project; a database of --size-mb of realistic text (tasks whose descriptions are
random sequences of a 20,000-word vocabulary: compressible like prose, not like
zeros) plus --assets-mb of asset files (a tenth of them duplicates). In the same run:

- ``pg_dump -Fc`` to a file (the baseline) vs ``dynoctl backup`` (whole command:
  dump, zstd, checksums, the read-back check, rename);
- single-job ``pg_restore`` of that file into an empty database vs ``dynoctl restore``
  (whole command: verify, restore into a new database, swap, migrate, /ready);
- peak RSS of dynoctl's own process (its ru_maxrss at exit), at half and full size;
- the API's p99 under a steady authenticated load (GET /projects, --rps paced, one
  process on 127.0.0.1, bounded by --load-seconds) just before vs during a backup.

    python bench/backup.py [--size-mb 300] [--assets-mb 30] [--rps 40]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from benchenv import CHILD_ENV  # noqa: E402
from tests.conftest import free_port, make_project  # noqa: E402

MIB = 1 << 20
WORDS = 20000
CORPUS_LINES = 100_000
BATCH_ROWS = 100_000
RSS_PROBE = ("import atexit, resource, sys; atexit.register(lambda: sys.stderr.write("
             "'MAXRSS_KIB %d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)); "
             "sys.argv = ['dynoctl'] + sys.argv[1:]; from dynoctl.cli import main; main()")


def dynoctl(project: Path, *args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess, float]:
    """Run dynoctl as a separate process; (wall seconds, the process, its peak RSS in MiB)."""
    argv = [sys.executable, "-c", RSS_PROBE, "--project-dir", str(project), "--runtime", "local", *args]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=CHILD_ENV)
    wall = time.perf_counter() - started
    if check and done.returncode != 0:
        raise SystemExit(f"dynoctl {' '.join(args)} failed:\n{done.stderr}")
    rss = next((int(line.split()[1]) / 1024 for line in done.stderr.splitlines() if line.startswith("MAXRSS_KIB")), 0)
    return wall, done, rss


def set_up(project: Path) -> tuple[str, int]:
    api_port, db_port = free_port(), free_port()
    dynoctl(project, "env", "init")
    env_file = project / "stack" / "env" / "server.local.env"
    env_file.write_text(env_file.read_text().replace("PORT=8000", f"PORT={api_port}")
                        .replace("127.0.0.1:5433", f"127.0.0.1:{db_port}"))
    dynoctl(project, "up")
    return f"http://127.0.0.1:{api_port}", api_port


def runtime_of(project: Path):
    from dynoctl.config import Settings
    from dynoctl.runtime.local import LocalRuntime

    return LocalRuntime(Settings(project))


# ------------------------------------------------------------------ the data
def seed_user(api: str) -> tuple[str, str]:
    import httpx

    credentials = {"email": f"bench-{uuid.uuid4().hex[:8]}@example.test", "password": "benchmark password"}
    with httpx.Client(base_url=api, timeout=30) as client:
        client.post("/auth/register", json=credentials).raise_for_status()
        token = client.post("/auth/login", json=credentials).raise_for_status().json()["access_token"]
        for i in range(20):
            client.post("/projects", json={"name": f"project {i}"},
                        headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    return credentials["email"], token


def load_corpus(conn) -> None:
    """CORPUS_LINES lines of 40-160 random words (Zipf-like frequencies)."""
    import itertools

    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 11))) for _ in range(WORDS)]
    cumulative = list(itertools.accumulate(1 / (i + 1) for i in range(WORDS)))
    conn.execute("CREATE UNLOGGED TABLE IF NOT EXISTS bench_corpus (id int PRIMARY KEY, line text)")
    with conn.cursor().copy("COPY bench_corpus (id, line) FROM STDIN") as copy:
        for i in range(CORPUS_LINES):
            copy.write_row((i, " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(40, 160)))))
    conn.commit()


def grow(conn, email: str, target_bytes: int) -> None:
    """Tasks with corpus descriptions (plus a random tail) until the database, less the
    corpus, is target_bytes."""
    owner = conn.execute("SELECT id FROM users WHERE email = %s", (email,)).fetchone()[0]
    projects = [r[0] for r in conn.execute("SELECT id FROM projects WHERE owner_id = %s", (owner,)).fetchall()]
    size = ("SELECT pg_database_size(current_database()) - coalesce(pg_total_relation_size("
            "to_regclass('bench_corpus')), 0)")
    while conn.execute(size).fetchone()[0] < target_bytes:
        # random() in a subquery's select list: evaluated once per row, then a hash join.
        conn.execute(
            "INSERT INTO tasks (id, project_id, title, description, status, assignee_id, due_date, created_at)"
            " SELECT gen_random_uuid(), (%s::uuid[])[1 + s.g %% %s], left(c.line, 60),"
            "   c.line || ' ' || md5(random()::text), (ARRAY['todo','in_progress','done'])[1 + s.g %% 3],"
            "   CASE WHEN s.g %% 4 = 0 THEN %s::uuid END, date '2026-01-01' + s.g %% 400, now() - s.g * interval '1 s'"
            " FROM (SELECT g, (random() * %s)::int AS cid FROM generate_series(1, %s) g OFFSET 0) s"
            " JOIN bench_corpus c ON c.id = s.cid",
            (projects, len(projects), owner, CORPUS_LINES - 1, BATCH_ROWS))
        conn.commit()


def add_assets(conn, root: Path, email: str, total_bytes: int) -> int:
    import hashlib

    owner = conn.execute("SELECT id FROM users WHERE email = %s", (email,)).fetchone()[0]
    project = conn.execute("SELECT id FROM projects WHERE owner_id = %s LIMIT 1", (owner,)).fetchone()[0]
    rng = random.Random(3)
    written, files, previous = 0, 0, None
    while written < total_bytes:
        data = previous if previous and rng.random() < 0.1 else os.urandom(rng.randint(20_000, 2 * MIB))
        previous = data
        asset = uuid.uuid4()
        storage = f"{asset.hex[:2]}/{asset}"
        (root / storage).parent.mkdir(parents=True, exist_ok=True)
        (root / storage).write_bytes(data)
        conn.execute("INSERT INTO assets (id, project_id, original_name, content_type, size, sha256, storage_path)"
                     " VALUES (%s, %s, 'f.bin', 'application/octet-stream', %s, %s, %s)",
                     (asset, project, len(data), hashlib.sha256(data).hexdigest(), storage))
        written += len(data)
        files += 1
    conn.commit()
    return files


# ------------------------------------------------------------------ the load
def load_worker(port: int, token: str, rps: float, seconds: float, stop, out) -> None:
    """Paced authenticated GETs; (start time, latency) of each, until stop or seconds pass."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    samples = []
    deadline = time.time() + seconds
    next_at = time.time()
    while time.time() < deadline and not stop.is_set() and len(samples) < rps * seconds:
        time.sleep(max(0.0, next_at - time.time()))
        started = time.time()
        connection.request("GET", "/projects?limit=20", headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status == 200:
            samples.append((started, time.time() - started))
        next_at += 1 / rps
    out.put(samples)


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else float("nan")


# -------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=300, help="database size to generate (pg_database_size)")
    parser.add_argument("--assets-mb", type=int, default=None, help="asset files (default: a tenth of --size-mb)")
    parser.add_argument("--rps", type=float, default=40, help="steady API load during the p99 windows")
    parser.add_argument("--window", type=float, default=10, help="seconds of load measured before the backup")
    parser.add_argument("--load-seconds", type=float, default=300, help="upper bound of the load process's life")
    args = parser.parse_args()
    assets_mb = args.assets_mb if args.assets_mb is not None else max(1, args.size_mb // 10)

    import psycopg

    from dynoctl.backup import psycopg_url

    project = make_project("dyno-bench-backup-")
    work = Path(project) / "bench"
    work.mkdir()
    try:
        api, api_port = set_up(project)
        runtime = runtime_of(project)
        url = psycopg_url(runtime.database_url())
        email, token = seed_user(api)
        started = time.perf_counter()
        with psycopg.connect(url) as conn:
            load_corpus(conn)
            grow(conn, email, args.size_mb * MIB // 2)
            files = add_assets(conn, project / ".dyno" / "assets", email, assets_mb * MIB)
        _, _, rss_half = dynoctl(project, "backup", "--output", str(work / "half"))
        shutil.rmtree(work / "half")
        with psycopg.connect(url) as conn:
            grow(conn, email, args.size_mb * MIB)
            conn.execute("DROP TABLE bench_corpus")
            conn.commit()
            db_size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")
        generated = time.perf_counter() - started

        # Backups: plain pg_dump -Fc, then dynoctl (no load).
        dump = work / "pm_app.dump"
        t0 = time.perf_counter()
        with open(dump, "wb") as out:
            assert runtime.exec("db", ["pg_dump", "-Fc", "pm_app"], stdout=out) == 0
        t_pgdump = time.perf_counter() - t0
        t_backup, done, rss_full = dynoctl(project, "--json", "backup", "--output", str(work / "b"))
        made = json.loads(done.stdout)

        # Restores: single-job pg_restore into an empty database, then dynoctl restore.
        admin = psycopg_url(runtime.database_url(), "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_restore")
        t0 = time.perf_counter()
        assert runtime.exec("db", ["pg_restore", "--exit-on-error", "--no-owner", "-d", "bench_restore", str(dump)]) == 0
        t_pgrestore = time.perf_counter() - t0
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE bench_restore")
        t_restore, _, rss_restore = dynoctl(project, "restore", made["path"], "--yes")
        with psycopg.connect(admin, autocommit=True) as conn:  # the safety copy: not needed here, and costs disk
            for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'pm_app_before_%'").fetchall():
                conn.execute(f'DROP DATABASE "{name}"')

        # The API's p99 just before vs during a backup.
        ctx = multiprocessing.get_context("spawn")
        stop, out = ctx.Event(), ctx.Queue()
        worker = ctx.Process(target=load_worker, args=(api_port, token, args.rps, args.load_seconds, stop, out))
        worker.start()
        time.sleep(1 + args.window)
        b0 = time.time()
        t_loaded, _, _ = dynoctl(project, "backup", "--output", str(work / "c"))
        b1 = time.time()
        stop.set()
        samples = out.get(timeout=60)
        worker.join()
        before = [lat for at, lat in samples if b0 - args.window <= at < b0]
        during = [lat for at, lat in samples if b0 <= at < b1]

        import tarfile

        with tarfile.open(made["path"]) as tar:
            dump_member_mib = tar.getmember("dump.pgdump.zst").size / MIB
        dump_mib, archive_mib = dump.stat().st_size / MIB, made["size"] / MIB
        print(f"# backup bench: database {db_size / MIB:.0f} MiB (pg_database_size), {files} asset files "
              f"({assets_mb} MiB), {os.cpu_count()} CPUs, generated in {generated:.0f} s")
        print(f"pg_dump -Fc            {t_pgdump:7.2f} s  {dump_mib:8.1f} MiB")
        print(f"dynoctl backup         {t_backup:7.2f} s  {archive_mib:8.1f} MiB  ({t_backup / t_pgdump:.3f}x time, "
              f"{dump_member_mib / dump_mib:.3f}x size: its dump member {dump_member_mib:.1f} MiB, plus {assets_mb} MiB of "
              "incompressible assets)")
        print(f"pg_restore (1 job)     {t_pgrestore:7.2f} s")
        print(f"dynoctl restore        {t_restore:7.2f} s  ({t_restore / t_pgrestore:.3f}x; verify + restore + swap "
              "+ migrate + /ready)")
        print(f"dynoctl peak RSS       backup {rss_full:.0f} MiB at full size, {rss_half:.0f} MiB at half size; "
              f"restore {rss_restore:.0f} MiB")
        print(f"API p99 ({args.rps:.0f} req/s) before {p99(before):7.2f} ms (n={len(before)}), during backup "
              f"{p99(during):7.2f} ms (n={len(during)}) -> {p99(during) / p99(before):.2f}x; "
              f"median {statistics.median(before) * 1000:.2f} -> {statistics.median(during) * 1000:.2f} ms; "
              f"backup under load {t_loaded:.2f} s")
    finally:
        dynoctl(project, "down", "--volumes", "--yes", check=False)
        shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
