"""The shared foundation every maintenance command stands on: the project lock, the
run history and atomic writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dynoctl import atomicfile, history, lock
from dynoctl.errors import Busy, Refused


def _hold_lock_in_child(state_dir, command="dynoctl up"):
    """A separate process holding the lock until killed; returns once it holds it."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from dynoctl.lock import project_lock
        with project_lock(Path({str(state_dir)!r}), {command!r}):
            print("held", flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_second_holder_is_refused_with_who_holds_it(tmp_path):
    child = _hold_lock_in_child(tmp_path)
    try:
        with pytest.raises(Busy) as caught:
            with lock.project_lock(tmp_path, "dynoctl down"):
                pass
        assert f"pid {child.pid}" in caught.value.message
        assert "dynoctl up" in caught.value.message
        assert caught.value.exit_status == 75
    finally:
        child.kill()
        child.wait()


def test_kill_9_never_leaves_a_stale_lock(tmp_path):
    child = _hold_lock_in_child(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with lock.project_lock(tmp_path, "dynoctl up") as me:
        assert me.pid == os.getpid()


def test_wait_queues_until_the_holder_ends(tmp_path):
    child = _hold_lock_in_child(tmp_path)
    heard = []
    subprocess.Popen(["sh", "-c", f"sleep 0.5; kill {child.pid}"])
    with lock.project_lock(tmp_path, "dynoctl down", wait=20, on_wait=heard.append):
        assert child.wait(timeout=5) is not None
    assert heard and "waiting for the project lock" in heard[0]


def test_wait_gives_up_after_its_time(tmp_path):
    child = _hold_lock_in_child(tmp_path)
    try:
        with pytest.raises(Busy):
            with lock.project_lock(tmp_path, "dynoctl down", wait=0.5):
                pass
    finally:
        child.kill()
        child.wait()


def test_lock_is_not_inherited_by_children_started_under_it(tmp_path):
    with lock.project_lock(tmp_path, "dynoctl up"):
        daemon = subprocess.Popen(["sleep", "30"])  # like the supervisor, started during up
    try:
        with lock.project_lock(tmp_path, "dynoctl down"):
            pass
    finally:
        daemon.kill()
        daemon.wait()


def test_history_records_success_failure_and_interruption(tmp_path):
    with history.recorded_run(tmp_path, "backup", "dynoctl backup") as run:
        run.summary["size"] = 123
    with pytest.raises(Refused):
        with history.recorded_run(tmp_path, "restore", "dynoctl restore"):
            raise Refused("no archive")
    with pytest.raises(KeyboardInterrupt):
        with history.recorded_run(tmp_path, "purge-sessions", "dynoctl purge"):
            raise KeyboardInterrupt
    runs = history.read(tmp_path)
    assert [(r.job, r.status, r.exit_code) for r in runs] == [
        ("backup", "ok", 0), ("restore", "refused", 3), ("purge-sessions", "interrupted", 130)]
    assert runs[0].summary == {"size": 123}
    assert set(history.last_success(tmp_path)) == {"backup"}
    assert [r.job for r in history.read(tmp_path, job="purge")] == ["purge-sessions"]


def test_history_skips_a_torn_line(tmp_path):
    history.append(tmp_path, history.Run("backup", "dynoctl backup", "2026-01-01T00:00:00", status="ok"))
    with open(history.path_in(tmp_path), "a") as f:
        f.write('{"job": "bac')  # a writer killed mid-line
    history.append(tmp_path, history.Run("purge", "dynoctl purge", "2026-01-02T00:00:00", status="ok"))
    assert [r.job for r in history.read(tmp_path)] == ["backup", "purge"]
    assert (tmp_path / "history.jsonl").stat().st_mode & 0o777 == 0o600


def test_concurrent_appends_never_interleave(tmp_path):
    code = textwrap.dedent(f"""
        from pathlib import Path
        from dynoctl import history
        for i in range(200):
            history.append(Path({str(tmp_path)!r}), history.Run("job", "x" * 500, str(i), status="ok"))
    """)
    children = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
    for child in children:
        assert child.wait(timeout=60) == 0
    assert len(history.read(tmp_path)) == 800


def test_history_is_trimmed_to_its_newest_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "MAX_ENTRIES", 10)
    for i in range(60):
        history.append(tmp_path, history.Run("job", "x" * 400, str(i), status="ok"))
    runs = history.read(tmp_path)
    assert len(runs) < 60 and runs[-1].started_at == "59"


def test_keep_copy_is_private_and_bounded(tmp_path):
    target = tmp_path / "server.env"
    for i in range(5):
        atomicfile.write_atomic(target, f"v{i}")
        atomicfile.keep_copy(target, keep=3)
        time.sleep(0.001)
    kept = atomicfile.copies(target)
    assert [p.read_text() for p in kept] == ["v2", "v3", "v4"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in kept)


def test_write_atomic_takes_bytes_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.bin"
    atomicfile.write_atomic(target, b"\x00\x01", mode=0o640)
    assert target.read_bytes() == b"\x00\x01" and target.stat().st_mode & 0o777 == 0o640
    (tmp_path / ".a.bin.dead.tmp").write_text("left by a killed writer")
    assert atomicfile.remove_stale_temps(tmp_path, "a.bin") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
