"""What each worker process has loaded, readable through any one of them.

Several uvicorn workers share the listening socket, so the one answering
``/health`` is only one of them. Secret rotation must know that *every* process
loaded key set V (and the new database login) before it promotes the key or
disables the old login. So each worker writes a small report, ``PID.json`` with
its key-set version and database login (a role name, never a password), into a
directory shared by the workers of one server (``DYNOSERVER_STATE_DIR``, a
private temp dir made by ``python -m dynoserver``), after start-up and after each
reload; ``/health`` returns the reports of the live ones. The same holds inside
a container, where the directory is in the container's own /tmp, so both
runtimes are observed through the published ``/health`` alone.

A worker started later (uvicorn replaces a dead one) reads the current files, so
it can only report the newest version: the reports never overstate agreement.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE_DIR_VARIABLE = "DYNOSERVER_STATE_DIR"
WORKERS_VARIABLE = "DYNOSERVER_WORKERS"  # how many workers the launcher started


def state_dir() -> Path | None:
    value = os.environ.get(STATE_DIR_VARIABLE)
    return Path(value) if value else None


def worker_count(argv: list[str], environ: dict) -> int:
    """The number of workers uvicorn will start: ``--workers`` wins over WEB_CONCURRENCY."""
    value = environ.get("WEB_CONCURRENCY", "1")
    for i, arg in enumerate(argv):
        if arg == "--workers" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--workers="):
            value = arg.split("=", 1)[1]
    try:
        return max(1, int(value))
    except ValueError:
        return 1  # uvicorn itself reports the bad value


def expected_workers() -> int:
    try:
        return max(1, int(os.environ.get(WORKERS_VARIABLE, "1")))
    except ValueError:
        return 1


def report(keyset: str, db_login: str | None) -> dict:
    """This process's report; written to the shared directory when there is one."""
    entry = {"pid": os.getpid(), "keyset": keyset, "db_login": db_login}
    directory = state_dir()
    if directory is not None:
        target = directory / f"{os.getpid()}.json"
        tmp = directory / f".{os.getpid()}.json.tmp"
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, target)  # readers see the old report or the new one, whole
    return entry


def reports(own: dict) -> list[dict]:
    """Every live worker's report (this process's from memory, the others' from disk)."""
    directory = state_dir()
    found = {own["pid"]: own}
    if directory is not None:
        for path in directory.glob("*.json"):
            try:
                entry = json.loads(path.read_text())
                pid = int(entry["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a report being replaced or torn: the next poll sees it
            if pid not in found and _alive(pid):
                found[pid] = entry
    return sorted(found.values(), key=lambda e: e["pid"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
