"""The ONE way dynoctl writes a file that must never be seen half-written: env files,
key files, manifests, the run history's rewrites, metrics files.

A temp file in the same directory (so the rename cannot cross filesystems), its mode
set before any byte is written, fsynced, given the old file's owner, renamed over the
target, then the directory fsynced (so the rename itself survives a power cut). A
failure or kill at any moment leaves the old file or the new one, whole, plus at most
a hidden ``.NAME.*.tmp`` that ``remove_stale_temps`` clears.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime, timezone
from pathlib import Path

from dynoctl.errors import DynoctlError

TEMP_SUFFIX = ".tmp"
BACKUP_INFIX = ".bak-"


def write_atomic(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically (see the module docstring)."""
    payload = data.encode() if isinstance(data, str) else data
    if not isinstance(payload, bytes):
        raise TypeError(f"write_atomic takes str or bytes, not {type(data).__name__}")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise DynoctlError(f"cannot write in {path.parent}: {exc.strerror}",
                           hint="check the directory's permissions, or pass --project-dir") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # the umask may have narrowed os.open's mode
            if path.exists():  # the old file's owner, before any byte is written
                st = path.stat()
                os.fchown(handle.fileno(), st.st_uid, st.st_gid)
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def keep_copy(path: Path, keep: int = 10, now: datetime | None = None) -> Path | None:
    """Copy ``path`` aside as ``NAME.bak-YYYYmmddTHHMMSSZ`` (0600) before it is replaced,
    keeping the newest ``keep`` copies. None when there is nothing to keep."""
    if not path.exists():
        return None
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    backup = path.with_name(f"{path.name}{BACKUP_INFIX}{stamp}")
    write_atomic(backup, path.read_bytes())
    for old in copies(path)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return backup


def copies(path: Path) -> list[Path]:
    """The kept copies of ``path``, oldest first (their stamps sort by time)."""
    return sorted(path.parent.glob(f"{path.name}{BACKUP_INFIX}*"))


def remove_stale_temps(directory: Path, name: str) -> int:
    """Drop temp files a killed writer of ``directory/name`` left behind."""
    removed = 0
    for tmp in directory.glob(f".{name}.*{TEMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
