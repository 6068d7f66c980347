"""Start-up cost of dynoctl against a bare two-command Typer app.

Runs `dynoctl --help` and `dynoctl version` and the same two invocations of a bare
Typer app, interleaved (so machine noise hits both alike), RUNS times each, and prints
the medians and the median of the paired ratios. Target: ratio <= 1.15.

    python bench/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchenv import CHILD_ENV

BARE_APP = '''
import typer

app = typer.Typer()


@app.command()
def version():
    """Show the version."""
    print("0.0.0")


@app.command()
def other():
    """Another command."""


app()
'''

PROJECT = Path(__file__).resolve().parent.parent


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=CHILD_ENV)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25)
    runs = max(10, parser.parse_args().runs)
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare.py"
        bare.write_text(BARE_APP)
        cases = {
            "--help": ([sys.executable, str(bare), "--help"],
                       [sys.executable, "-m", "dynoctl", "--help"]),
            "version": ([sys.executable, str(bare), "version"],
                        [sys.executable, "-m", "dynoctl", "--project-dir", str(PROJECT), "version"]),
        }
        for name, (baseline, ours) in cases.items():
            timed(baseline), timed(ours)  # warm the page cache and write the .pyc files
            base_times, our_times = [], []
            for _ in range(runs):
                base_times.append(timed(baseline))
                our_times.append(timed(ours))
            b, o = statistics.median(base_times), statistics.median(our_times)
            # Each dynoctl run is divided by the bare run just before it, so drift in the
            # machine's load (shared, noisy) cancels out; the median of those ratios is the figure.
            paired = statistics.median(ours / base for base, ours in zip(base_times, our_times))
            print(f"cli_startup {name:<8} bare typer {b * 1000:6.1f} ms  dynoctl {o * 1000:6.1f} ms  "
                  f"ratio {paired:.2f}  (median of {runs} paired runs, target <= 1.15)")


if __name__ == "__main__":
    main()
