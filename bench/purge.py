"""Purge benchmark: dynoctl's batched session purge against a naive single DELETE,
with the API under a steady authenticated load from other processes on 127.0.0.1.

    python bench/purge.py [--sessions 2000000] [--stale 1000000] [--memory-stale 2000000]
                          [--concurrency 2] [--idle-seconds 8]

Prints:
- purge throughput (rows/s, the whole run: plan, batches, ANALYZE) and the naive
  ``DELETE FROM <copy> WHERE expires_at < cutoff`` on an identical copy of the table,
  measured in the same run under the same load, and their ratio (target >= 0.7);
- the longest single purge transaction (target <= 250 ms);
- the API's p99 (authenticated GET /projects) during the purge against its p99 in the
  window just before (target <= 1.5x);
- the purge process's peak RSS at --stale and at --memory-stale stale rows (target: the
  same); the purge runs in a child process so that its peak is its own.

Data: sessions created over time (physical order follows created_at, as in a live
table), expiring 30 days after creation; the oldest --stale of them are expired past the
7-day cutoff. One throwaway embedded PostgreSQL cluster; the run is bounded by the
sizes given (the full size takes a few minutes on a small machine).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from api_load import api_server, bench_database, embedded_postgres, seed  # noqa: E402
from benchenv import CHILD_ENV  # noqa: E402

LOAD_CAP_SECONDS = 900  # the load stops at the end of the bench, or here at the latest
LOAD_CAP_REQUESTS = 2_000_000

PURGE_CHILD = """
import json, resource, sys, time
from datetime import timedelta
import psycopg  # imported before the clock starts: the naive DELETE is timed without Python's imports
from dynoctl import purge
t0 = time.perf_counter()
report = purge.run(sys.argv[1], None, ["sessions"], purge.PurgeOptions(older_than=timedelta(days=7)), apply=True)
k = report.kinds[0]
print(json.dumps({"deleted": k.deleted, "candidates": k.candidates, "seconds": time.perf_counter() - t0,
                  "batches": k.batches, "batch_seconds": k.batch_seconds, "longest_batch_ms": k.longest_batch_ms,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "status": report.status}))
"""


def sql(url: str, *statements: str):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        result = None
        for statement in statements:
            cur = conn.execute(statement)
            result = cur.fetchall() if cur.description else None
        return result


def fill_sessions(url: str, table: str, total: int, stale: int, user_email: str) -> None:
    """`total` sessions of the bench user, created one per second-ish up to now; the
    oldest `stale` expired more than 7 days ago, the rest alive. In chunks, so the
    load of the fill itself stays bounded."""
    chunk = 200_000
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        sql(url, f"""
            INSERT INTO {table} (id, user_id, token_hash, created_at, expires_at)
            SELECT gen_random_uuid(), u.id, md5(g::text) || md5(g::text),
                   CASE WHEN g < {stale} THEN now() - interval '60 days' + g * interval '1 millisecond'
                        ELSE now() - interval '1 day' + (g - {stale}) * interval '1 millisecond' END,
                   CASE WHEN g < {stale} THEN now() - interval '30 days' + g * interval '1 millisecond'
                        ELSE now() + interval '29 days' + (g - {stale}) * interval '1 millisecond' END
            FROM generate_series({start}, {start + n - 1}) g, users u WHERE u.email = '{user_email}'""")


def load_worker(port: int, token: str, stop, out_queue, cap_seconds: float, cap_requests: int) -> None:
    """Authenticated GET /projects back to back on one keep-alive connection; records
    (time, latency) of each request until told to stop (or the caps)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    samples, errors = [], 0
    deadline = time.monotonic() + cap_seconds
    while not stop.is_set() and time.monotonic() < deadline and len(samples) < cap_requests:
        before = time.time()
        connection.request("GET", "/projects", headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status == 200:
            samples.append((before, time.time() - before))
        else:
            errors += 1
    connection.close()
    out_queue.put((samples, errors))


def p99(samples, start: float, end: float) -> tuple[float, int]:
    window = sorted(lat for t, lat in samples if start <= t < end)
    if not window:
        return float("nan"), 0
    return window[min(len(window) - 1, int(len(window) * 0.99))] * 1000, len(window)


def run_purge_child(url: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PURGE_CHILD, url], capture_output=True, text=True,
                          env=CHILD_ENV, cwd=REPO, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=2_000_000)
    parser.add_argument("--stale", type=int, default=1_000_000)
    parser.add_argument("--memory-stale", type=int, default=2_000_000,
                        help="a second purge of this many stale rows, for the peak-memory comparison")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--idle-seconds", type=float, default=8)
    args = parser.parse_args()

    with embedded_postgres() as admin_url, bench_database(admin_url) as url, api_server(url) as base_url:
        sql(url, "ALTER SYSTEM SET autovacuum = off", "SELECT pg_reload_conf()")  # the same for both deletes
        credentials, token = seed(base_url)
        t0 = time.perf_counter()
        fill_sessions(url, "sessions", args.sessions, args.stale, credentials["email"])
        sql(url, "CREATE TABLE sessions_copy (LIKE sessions INCLUDING ALL)",
            "INSERT INTO sessions_copy SELECT * FROM sessions",
            "VACUUM ANALYZE sessions", "VACUUM ANALYZE sessions_copy", "CHECKPOINT")
        print(f"purge bench: {args.sessions} sessions ({args.stale} stale) and an identical copy made in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)

        ctx = multiprocessing.get_context("spawn")
        stop, results = ctx.Event(), ctx.Queue()
        port = urlsplit(base_url).port
        workers = [ctx.Process(target=load_worker, args=(port, token, stop, results, LOAD_CAP_SECONDS,
                                                         LOAD_CAP_REQUESTS)) for _ in range(args.concurrency)]
        for w in workers:
            w.start()
        time.sleep(2)  # connected and warm
        idle_start = time.time()
        time.sleep(args.idle_seconds)
        purge_start = time.time()
        purged = run_purge_child(url)
        purge_end = time.time()
        cutoff = "now() - interval '7 days'"
        naive_start = time.perf_counter()
        naive_rows = sql(url, f"WITH d AS (DELETE FROM sessions_copy WHERE expires_at < {cutoff} RETURNING 1) "
                              "SELECT count(*) FROM d")[0][0]
        naive_s = time.perf_counter() - naive_start
        stop.set()
        samples, errors = [], 0
        for _ in workers:
            s, e = results.get(timeout=120)
            samples += s
            errors += e
        for w in workers:
            w.join(timeout=30)

        idle_p99, idle_n = p99(samples, idle_start, purge_start)
        during_p99, during_n = p99(samples, purge_start, purge_end)
        purge_rps = purged["deleted"] / purged["seconds"]
        naive_rps = naive_rows / naive_s
        print(f"purge throughput  {purge_rps:10.0f} rows/s ({purged['deleted']} rows in {purged['seconds']:.1f} s, "
              f"{purged['batches']} batches)  naive DELETE {naive_rps:10.0f} rows/s ({naive_rows} rows in "
              f"{naive_s:.1f} s)  ratio {purge_rps / naive_rps:.2f}x (target >= 0.7x)")
        batch_rps = purged["deleted"] / purged["batch_seconds"]
        print(f"purge delete transactions alone {batch_rps:10.0f} rows/s ({purged['batch_seconds']:.1f} s)  "
              f"ratio {batch_rps / naive_rps:.2f}x the naive DELETE")
        print(f"purge longest transaction {purged['longest_batch_ms']:.0f} ms (target <= 250 ms)")
        print(f"api p99 during purge {during_p99:.1f} ms (n={during_n})  before {idle_p99:.1f} ms (n={idle_n})  "
              f"ratio {during_p99 / idle_p99:.2f}x (target <= 1.5x; errors={errors}, c={args.concurrency})")

        # Peak memory: the same purge over a different number of stale rows.
        fill_sessions(url, "sessions", args.memory_stale, args.memory_stale, credentials["email"])
        sql(url, "VACUUM ANALYZE sessions")
        bigger = run_purge_child(url)
        print(f"purge peak RSS {purged['maxrss_kib'] / 1024:.1f} MiB at {purged['deleted']} stale rows, "
              f"{bigger['maxrss_kib'] / 1024:.1f} MiB at {bigger['deleted']} stale rows "
              f"(ratio {bigger['maxrss_kib'] / purged['maxrss_kib']:.2f}x, target 1.0x)")


if __name__ == "__main__":
    main()
