"""The ONE project lock: every command that changes the stack holds it while it runs
(up, down, restart, migrate up|down|new, env init --force, backup, restore, rotation,
purge).

It is an ``flock`` on ``.dyno/lock``: the kernel drops it when its holder exits, however
it exits (kill -9 included), so a stale lock cannot exist. The file's content says who
holds it (pid, command, since) for the message a second run prints; that content is
advisory, the flock is the truth. The descriptor is never inherited, so a server or
supervisor started under the lock does not keep holding it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from dynoctl.errors import Busy, DynoctlError

LOCK_FILENAME = "lock"
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Holder:
    pid: int | None
    command: str
    since: str  # ISO 8601, UTC

    def describe(self) -> str:
        pid = f"pid {self.pid}" if self.pid else "an unknown process"
        return f"{pid} ('{self.command}', since {self.since})"


def read_holder(state_dir: Path) -> Holder | None:
    """Who holds the lock, as its holder wrote it (None if unknown or free)."""
    try:
        data = json.loads((state_dir / LOCK_FILENAME).read_text() or "{}")
    except (OSError, ValueError):
        return None
    if not data:
        return None
    return Holder(data.get("pid"), data.get("command", "?"), data.get("since", "?"))


@contextmanager
def project_lock(state_dir: Path, command: str, wait: float = 0,
                 on_wait: Callable[[str], None] = lambda _: None) -> Iterator[Holder]:
    """Hold the project lock for the body. Taken: raise Busy (exit 75) at once, or
    after ``wait`` seconds of polling (``on_wait`` hears once that we queue)."""
    fd = _open(state_dir)
    try:
        _acquire(fd, state_dir, wait, on_wait)
        me = Holder(os.getpid(), command, datetime.now(timezone.utc).isoformat(timespec="seconds"))
        _write_holder(fd, me)
        try:
            yield me
        finally:
            _write_holder(fd, None)  # before unlocking: the next holder writes its own
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open(state_dir: Path) -> int:
    try:
        state_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        fd = os.open(state_dir / LOCK_FILENAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise DynoctlError(f"cannot open the project lock in {state_dir}: {exc.strerror}",
                           hint="check the project directory's permissions") from exc
    os.set_inheritable(fd, False)
    return fd


def _acquire(fd: int, state_dir: Path, wait: float, on_wait: Callable[[str], None]) -> None:
    deadline = time.monotonic() + max(0.0, wait)
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = read_holder(state_dir)
        who = holder.describe() if holder else "another dynoctl run"
        if time.monotonic() >= deadline:
            raise Busy(f"another dynoctl run holds this project's lock: {who}",
                       hint="wait for it to finish, or pass --wait SECONDS to queue behind it")
        if not announced:
            on_wait(f"waiting for the project lock, held by {who}")
            announced = True
        time.sleep(POLL_SECONDS)


def _write_holder(fd: int, holder: Holder | None) -> None:
    text = json.dumps(vars(holder)) if holder else ""
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
