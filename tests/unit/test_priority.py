"""dynoctl.priority on this machine's real scheduler: a busy process that is not ours
confines the governed ones to half the CPUs, and they get all of them back once the
machine is calm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from dynoctl import priority

CPUS = len(os.sched_getaffinity(0))


def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _stranger_busy_loop() -> int:
    """A CPU-bound process that is not our descendant (its parent shell exits, so it is
    re-parented): to the governor it is somebody else's work."""
    shell = subprocess.run(["sh", "-c", "(while :; do :; done) >/dev/null 2>&1 & echo $!"],
                           capture_output=True, text=True, check=True)
    return int(shell.stdout.strip())


def test_lower_sets_nice_19_on_a_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert priority.lower(child.pid)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 19
    finally:
        child.kill()
        child.wait()
    assert not priority.lower(child.pid)  # gone: refused, not raised


@pytest.mark.skipif(CPUS < 2, reason="confining to half the CPUs needs at least two")
def test_governor_confines_while_others_are_busy_and_releases_when_calm():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # ours: governed
    stranger = None
    try:
        with priority.Governor() as governor:
            # A calm machine (CI runs one test at a time; the deadline lets a previous
            # test's processes wind down): everything is released.
            assert _wait_for(lambda: not governor.confined, 20 * priority.TICK_S)
            assert os.sched_getaffinity(child.pid) == governor.all_cpus
            stranger = _stranger_busy_loop()
            assert _wait_for(lambda: governor.confined, 6 * priority.TICK_S)
            assert _wait_for(lambda: os.sched_getaffinity(child.pid) == governor.half, 2 * priority.TICK_S)
            assert os.sched_getaffinity(0) == governor.half  # this thread too
            assert stranger not in governor._ours(governor._scan())
            os.kill(stranger, signal.SIGKILL)
            stranger = None
            assert _wait_for(lambda: not governor.confined, 20 * priority.TICK_S)
            assert _wait_for(lambda: os.sched_getaffinity(child.pid) == governor.all_cpus, 2 * priority.TICK_S)
        assert os.sched_getaffinity(0) == governor.all_cpus  # given back on leaving
    finally:
        if stranger:
            os.kill(stranger, signal.SIGKILL)
        child.kill()
        child.wait()
