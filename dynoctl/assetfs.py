"""File operations of the asset purge, on the assets directory.

Standard library only, and runnable as a script (``python -c SOURCE OP ASSETS_DIR``,
paths on stdin, results on stdout), because on the docker runtime the files live in the
server container's volume: dynoctl sends this module's source through
``Runtime.exec('server', ...)`` and runs the very same functions there. On the local
runtime they run in-process. One implementation, two transports.

Paths are relative to the assets directory. The quarantine lives inside it
(``.quarantine/<YYYYmmddTHHMMSS>/<aa>/<name>``) so that moving a file there is one
rename on the same filesystem (the docker volume included), and restoring it is one
rename back.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import sys
import time

QUARANTINE = ".quarantine"
# The layout of dynoserver.storage (STORAGE_PATH), repeated here because this module
# runs where dynoctl is not installed; a test keeps the two equal.
_UUID_AFTER_PREFIX = r"[0-9a-f]{6}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
STORAGE_PATH = re.compile(rf"^(?P<prefix>[0-9a-f]{{2}})/(?P<id>(?P=prefix){_UUID_AFTER_PREFIX})$")
PARTIAL_SUFFIX = ".part"
_BATCH_DIR = re.compile(r"^\d{8}T\d{6}$")


def classify(relpath: str) -> str:
    """'stored' (a file the server names <aa>/<id>), 'partial' (<aa>/<id>.part) or 'unknown'."""
    if STORAGE_PATH.match(relpath):
        return "stored"
    if relpath.endswith(PARTIAL_SUFFIX) and STORAGE_PATH.match(relpath[: -len(PARTIAL_SUFFIX)]):
        return "partial"
    return "unknown"


def scan(root: str, now: float):
    """Yield (relpath, kind, size, age_seconds) for every file under root except the
    quarantine, one directory at a time (memory follows the largest directory).

    Age counts from mtime, the last write: the server writes ``<id>.part``, renames it
    and then commits the row, so a file whose last write is older than any upload can
    take is not in flight. (A restore writes files before rows too, with old mtimes:
    dynoctl purge does not sweep assets while a restore holds the project lock.)"""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = sorted(os.scandir(os.path.join(root, rel_dir)), key=lambda e: e.name)
        except FileNotFoundError:
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if rel == QUARANTINE:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(rel)
                continue
            st = entry.stat(follow_symlinks=False)
            kind = classify(rel) if entry.is_file(follow_symlinks=False) else "unknown"
            yield rel, kind, st.st_size, now - st.st_mtime


def existing(root: str, relpaths):
    """The given paths that exist as regular files."""
    return [p for p in relpaths if os.path.isfile(os.path.join(root, p))]


def quarantine(root: str, relpaths, stamp: str):
    """Move files into .quarantine/<stamp>/, keeping their relative path; yields
    (relpath, size) of each file moved. Only layout names are ever moved."""
    for rel in relpaths:
        if classify(rel) == "unknown":
            continue
        source = os.path.join(root, rel)
        target = os.path.join(root, QUARANTINE, stamp, rel)
        try:
            size = os.stat(source, follow_symlinks=False).st_size
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(source, target)
        except FileNotFoundError:
            continue
        yield rel, size


def remove(root: str, relpaths):
    """Delete files (rows already gone); yields (relpath, size) of each file removed."""
    for rel in relpaths:
        if classify(rel) == "unknown":
            continue
        path = os.path.join(root, rel)
        try:
            size = os.stat(path, follow_symlinks=False).st_size
            os.unlink(path)
        except FileNotFoundError:
            continue
        yield rel, size


def quarantine_batches(root: str, now: float):
    """Yield (stamp, files, bytes, age_seconds) of each quarantine batch."""
    base = os.path.join(root, QUARANTINE)
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return
    for name in names:
        if not _BATCH_DIR.match(name):
            continue
        files = size = 0
        for dirpath, _, filenames in os.walk(os.path.join(base, name)):
            for filename in filenames:
                files += 1
                size += os.stat(os.path.join(dirpath, filename), follow_symlinks=False).st_size
        stamp_time = calendar.timegm(time.strptime(name, "%Y%m%dT%H%M%S"))  # stamps are UTC
        yield name, files, size, now - stamp_time


def drop_batch(root: str, stamp: str):
    """Delete one quarantine batch; yields (relpath, size) of each file deleted."""
    if not _BATCH_DIR.match(stamp):
        return
    top = os.path.join(root, QUARANTINE, stamp)
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        for filename in filenames:
            path = os.path.join(dirpath, filename)
            size = os.stat(path, follow_symlinks=False).st_size
            os.unlink(path)
            yield os.path.relpath(path, top), size
        os.rmdir(dirpath)


def _main(argv):
    """The script side: OP ROOT [ARG]; JSON lines in (paths), JSON lines out."""
    op, root = argv[0], argv[1]
    paths = (json.loads(line) for line in sys.stdin if line.strip())
    now = time.time()
    if op == "scan":
        rows = scan(root, now)
    elif op == "existing":
        rows = ([p] for p in existing(root, list(paths)))
    elif op == "quarantine":
        rows = quarantine(root, paths, argv[2])
    elif op == "remove":
        rows = remove(root, paths)
    elif op == "batches":
        rows = quarantine_batches(root, now)
    elif op == "drop":
        rows = drop_batch(root, argv[2])
    else:
        raise SystemExit(f"unknown op {op}")
    for row in rows:
        sys.stdout.write(json.dumps(list(row)) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    _main(sys.argv[1:])
