"""Secret rotation under load: the local runtime with two server workers, a steady
authenticated load from another process (tests/integration/rotation_load.py: API
calls and refreshes on 127.0.0.1), and `dynoctl rotate-secrets` (JWT keys, then the
database login) run ROUNDS times while it goes on. For each rotation, the p99
latency of the requests that started during it is compared with the p99 of the
window of equal length right before it (same run, same machine); the figures are
medians over the rotations. Also: failed requests (all of them, whole run) and the
rotation wall time (the rotate-secrets process, start to exit).

    python bench/rotation.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchenv import CHILD_ENV  # noqa: E402
from tests.conftest import REPO, free_port, make_project  # noqa: E402

FAST_HASHING = "ARGON2_TIME_COST=1\nARGON2_MEMORY_KIB=8\nARGON2_PARALLELISM=1\n"
SETTLE_SECONDS = 3  # between rotations: the "before" window of the next one


def dynoctl(project: Path, *args: str) -> tuple[float, float]:
    started = time.time()
    subprocess.run([sys.executable, "-m", "dynoctl", "--project-dir", str(project), "--runtime", "local", *args],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=CHILD_ENV)
    return started, time.time()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


def configure(project: Path) -> None:
    subprocess.run([sys.executable, "-m", "dynoctl", "--project-dir", str(project), "env", "init"], check=True,
                   stdout=subprocess.DEVNULL, env=CHILD_ENV)
    path = project / "stack" / "env" / "server.local.env"
    text = path.read_text().replace("PORT=8000", f"PORT={free_port()}")
    text = text.replace("127.0.0.1:5433", f"127.0.0.1:{free_port()}")
    path.write_text(text + FAST_HASHING + "WEB_CONCURRENCY=2\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    project, work = make_project("dyno-bench-rot-"), Path(tempfile.mkdtemp(prefix="dyno-bench-rot-load-"))
    try:
        configure(project)
        dynoctl(project, "up")
        api = next(line.split("=", 1)[1] for line in (project / "stack/env/server.local.env").read_text().splitlines()
                   if line.startswith("PORT="))
        stop, out = work / "stop", work / "load.json"
        load = subprocess.Popen([sys.executable, "-m", "tests.integration.rotation_load", f"http://127.0.0.1:{api}",
                                 str(stop), str(out), "200000", "300"], cwd=REPO, env=CHILD_ENV)
        while not out.with_suffix(".ready").exists():
            time.sleep(0.1)
        time.sleep(SETTLE_SECONDS)
        windows = []
        for _ in range(rounds):
            for kind, args in (("jwt", ("rotate-secrets", "--yes")),
                               ("db", ("rotate-secrets", "--db-password", "--yes")),
                               ("control", ("rotate-secrets", "--dry-run"))):
                windows.append((kind, *dynoctl(project, *args)))
                time.sleep(SETTLE_SECONDS)
        stop.write_text("1")
        load.wait(timeout=120)
        result = json.loads(out.read_text())
        report(result, windows)
    finally:
        dynoctl(project, "down", "--volumes", "--yes")
        shutil.rmtree(project, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def report(result: dict, windows: list[tuple[str, float, float]]) -> None:
    samples = result["samples"]
    control = [w for w in windows if w[0] == "control"]
    windows = [w for w in windows if w[0] != "control"]
    ratios, before_p99, during_p99, walls = [], [], [], []
    for _kind, start, end in windows:
        length = end - start
        during = [lat for t, lat in samples if start <= t < end]
        before = [lat for t, lat in samples if start - length <= t < start]
        before_p99.append(p99(before))
        during_p99.append(p99(during))
        ratios.append(p99(during) / p99(before))
        walls.append(length)
    jwt_walls = [end - start for kind, start, end in windows if kind == "jwt"]
    db_walls = [end - start for kind, start, end in windows if kind == "db"]
    print(f"requests: {result['requests']}, failed: {len(result['failures'])}")
    print(f"p99 before rotation (median of {len(windows)} windows): {statistics.median(before_p99) * 1000:.1f} ms")
    print(f"p99 during rotation (median of {len(windows)} windows): {statistics.median(during_p99) * 1000:.1f} ms")
    print(f"p99 during/before ratio: median {statistics.median(ratios):.2f} (each: "
          + ", ".join(f"{r:.2f}" for r in ratios) + ")")
    control_ratios = [p99([lat for t, lat in samples if start <= t < end])
                      / p99([lat for t, lat in samples if 2 * start - end <= t < start]) for _, start, end in control]
    print(f"control, a dynoctl process that changes nothing (rotate-secrets --dry-run): p99 during/before median "
          f"{statistics.median(control_ratios):.2f}")
    print(f"median latency over the run: {statistics.median(lat for _, lat in samples) * 1000:.1f} ms")
    print(f"rotation wall time: JWT median {statistics.median(jwt_walls):.2f} s, "
          f"database login median {statistics.median(db_walls):.2f} s")


if __name__ == "__main__":
    main()
