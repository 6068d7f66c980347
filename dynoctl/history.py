"""The ONE run history: one JSON line per run of a maintenance job (backup, verify,
prune, restore, rotation, purge ...), appended to ``.dyno/history.jsonl``.

``dynoctl history`` reads it, the scheduler and monitoring read it, and every job
writes it through ``recorded_run``, which records failures and interruptions as well
as successes. Appends take an flock on the file, so concurrent jobs (a backup and a
purge of another kind) never interleave half lines; the file is trimmed to the newest
``MAX_ENTRIES`` with an atomic rewrite. Entries never hold secrets: a job's summary is
counts, sizes, names and durations.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from dynoctl.errors import DynoctlError, ExitStatus

HISTORY_FILENAME = "history.jsonl"
MAX_ENTRIES = 2000
_STATUS_BY_EXIT = {ExitStatus.PARTIAL: "partial", ExitStatus.REFUSED: "refused", ExitStatus.BUSY: "busy",
                   ExitStatus.INTERRUPTED: "interrupted"}


@dataclass
class Run:
    """One run, as recorded. ``summary`` is filled in by the job while it runs."""

    job: str  # "backup" | "backup-verify" | "backup-prune" | "restore" | "rotate-secrets" | "purge-sessions" ...
    command: str
    started_at: str
    status: str = "running"  # "ok" | "failed" | "partial" | "refused" | "interrupted" | "busy"
    finished_at: str | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)


def path_in(state_dir: Path) -> Path:
    return state_dir / HISTORY_FILENAME


@contextmanager
def recorded_run(state_dir: Path, job: str, command: str) -> Iterator[Run]:
    """Record one run of ``job``: its outcome follows how the body ends (an exception's
    exit status, KeyboardInterrupt as interrupted). The body may fill ``run.summary``."""
    run = Run(job, command, _now())
    started = time.monotonic()
    try:
        yield run
        run.status, run.exit_code = "ok", ExitStatus.OK
    except DynoctlError as exc:
        run.exit_code = int(exc.exit_status)
        run.status = _STATUS_BY_EXIT.get(exc.exit_status, "failed")
        run.error = exc.message
        raise
    except KeyboardInterrupt:
        run.status, run.exit_code, run.error = "interrupted", ExitStatus.INTERRUPTED, "interrupted"
        raise
    except BaseException as exc:
        run.status, run.exit_code, run.error = "failed", ExitStatus.FAILED, f"unexpected {type(exc).__name__}"
        raise
    finally:
        run.finished_at = _now()
        run.duration_s = round(time.monotonic() - started, 3)
        append(state_dir, run)


def append(state_dir: Path, run: Run) -> None:
    state_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    line = json.dumps(vars(run), default=str, separators=(",", ":")) + "\n"
    path = path_in(state_dir)
    fd = _open_locked(path)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a writer killed mid-line: end its torn line
            line = "\n" + line
        os.write(fd, line.encode())
        os.fsync(fd)
        if os.fstat(fd).st_size > MAX_ENTRIES * 2048:
            _trim(path)
    finally:
        os.close(fd)  # releases the flock


def _open_locked(path: Path) -> int:
    """The history file, opened for appending under its flock. A trim replaces the
    file while others may wait on the old one: whoever gets the lock on a replaced
    inode opens the path again."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def read(state_dir: Path, job: str | None = None, limit: int | None = None) -> list[Run]:
    """Recorded runs, oldest first; unreadable lines (a torn write) are skipped."""
    try:
        text = path_in(state_dir).read_text()
    except FileNotFoundError:
        return []
    runs = []
    for line in text.splitlines():
        try:
            runs.append(Run(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    if job:
        runs = [r for r in runs if r.job == job or r.job.startswith(job + "-")]
    return runs[-limit:] if limit else runs


def last_success(state_dir: Path) -> dict[str, Run]:
    """job -> its newest successful run."""
    return {run.job: run for run in read(state_dir) if run.status == "ok"}


def _trim(path: Path) -> None:
    # Called under the append flock; the rewrite is atomic, so readers see old or new.
    from dynoctl.atomicfile import write_atomic

    lines = path.read_text().splitlines(keepends=True)
    write_atomic(path, "".join(lines[-MAX_ENTRIES:]))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


