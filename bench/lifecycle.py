"""Lifecycle timings of the local runtime: cold `up` to ready (cluster initialised,
migrated, server ready), warm `up` (already running), `status`, `restart server`, `down`; median of
ROUNDS rounds in a fresh project on free ports. The baseline is a bare
`python -c pass` measured in the same run, so the figures can be compared across
machines as ratios.

    python bench/lifecycle.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchenv import CHILD_ENV  # noqa: E402
from tests.conftest import free_port, make_project  # noqa: E402


def dynoctl(project: Path, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dynoctl", "--project-dir", str(project), "--runtime", "local", *args],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=CHILD_ENV)
    return time.perf_counter() - started


def interpreter_start() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=CHILD_ENV)
    return time.perf_counter() - started


def one_round(project: Path) -> dict[str, float]:
    times = {"cold up": dynoctl(project, "up"), "warm up": dynoctl(project, "up"),
             "status": dynoctl(project, "status"),
             # restart checks first, then waits until the server is ready again
             "restart": dynoctl(project, "restart", "server"),
             "down": dynoctl(project, "down")}
    dynoctl(project, "down", "--volumes", "--yes")  # the next round starts cold again
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    project = make_project("dyno-bench-")
    try:
        subprocess.run([sys.executable, "-m", "dynoctl", "--project-dir", str(project), "env", "init"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = project / "stack" / "env" / "server.local.env"
        env.write_text(env.read_text().replace("PORT=8000", f"PORT={free_port()}")
                       .replace("127.0.0.1:5433", f"127.0.0.1:{free_port()}"))
        results = [one_round(project) for _ in range(rounds)]
        baseline = statistics.median(interpreter_start() for _ in range(10))
    finally:
        subprocess.run([sys.executable, "-m", "dynoctl", "--project-dir", str(project), "--runtime", "local",
                        "down", "--volumes", "--yes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(project, ignore_errors=True)
    print(f"lifecycle baseline python -c pass {baseline * 1000:7.1f} ms")
    for step in results[0]:
        median = statistics.median(r[step] for r in results)
        print(f"lifecycle {step:<8} {median * 1000:7.1f} ms  ({median / baseline:5.1f}x python start-up, "
              f"median of {rounds})")


if __name__ == "__main__":
    main()
