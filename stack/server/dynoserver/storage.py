"""Asset files under ASSETS_DIR.

Layout (``<id>`` is the asset's UUID in canonical lowercase form, ``<aa>`` its
first two hex digits, to keep directories small)::

    ASSETS_DIR/<aa>/<id>        a stored file; its row has storage_path "<aa>/<id>"
    ASSETS_DIR/<aa>/<id>.part   an upload being received (or abandoned mid-way)

Order of writes: the bytes go to ``<id>.part``, are fsynced, renamed to
``<id>``, and only then is the ``assets`` row committed; deleting removes the
row first and the file after. So for the purge:

- a ``<id>`` file without a row is an orphan once it is older than any upload
  can take (a young one may be waiting for its row to commit);
- a ``<id>.part`` file older than that is an abandoned upload;
- a row whose file is missing is damage: the server never produces it.

``STORAGE_PATH`` matches exactly the names the server writes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from pathlib import Path

log = logging.getLogger("dynoserver.storage")

_UUID_AFTER_PREFIX = r"[0-9a-f]{6}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Uploads are private to the service: other local accounts can read neither the files
# nor the names. Modes are given at creation (not chmod after), so no moment exists
# where a file is readable by others; the umask can only narrow them further.
FILE_MODE = 0o600
DIR_MODE = 0o700
STORAGE_PATH = re.compile(rf"^(?P<prefix>[0-9a-f]{{2}})/(?P<id>(?P=prefix){_UUID_AFTER_PREFIX})$")
PARTIAL_SUFFIX = ".part"


class TooLarge(Exception):
    """The file grew past the configured limit."""


def storage_path_for(asset_id: uuid.UUID) -> str:
    return f"{asset_id.hex[:2]}/{asset_id}"


def resolve(assets_dir: Path, storage_path: str) -> Path:
    """The absolute path of a stored file; refuses anything the server would not have written."""
    if not STORAGE_PATH.match(storage_path):
        raise ValueError("not an asset storage path")
    return assets_dir / storage_path


def remove_files(assets_dir: Path, storage_paths: list[str]) -> None:
    """Best effort: a file left behind is an orphan the purge collects later."""
    for storage_path in storage_paths:
        try:
            resolve(assets_dir, storage_path).unlink(missing_ok=True)
        except (OSError, ValueError) as exc:
            log.warning("could not remove asset file %s: %s", storage_path, exc)


class FileSink:
    """Receives one upload: writes ``<id>.part``, hashing and counting as it goes.

    ``commit`` makes the file durable under its final name; ``discard`` removes
    whatever was written. Blocking: call it from a worker thread.
    """

    def __init__(self, assets_dir: Path, asset_id: uuid.UUID, max_bytes: int):
        self.asset_id = asset_id
        self.storage_path = storage_path_for(asset_id)
        self._final = assets_dir / self.storage_path
        self._partial = self._final.with_name(self._final.name + PARTIAL_SUFFIX)
        _private_dirs(assets_dir, self._final.parent)
        self._file = os.fdopen(os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb")
        self._max_bytes = max_bytes
        self._sha256 = hashlib.sha256()
        self.size = 0

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._max_bytes:
            raise TooLarge()
        self._sha256.update(data)
        self._file.write(data)

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._partial, self._final)
        _fsync_dir(self._final.parent)

    def discard(self) -> None:
        self.discard_partial()
        self._final.unlink(missing_ok=True)

    def discard_partial(self) -> None:
        """Remove only an unfinished ``.part``: a committed file may already have its row."""
        self._file.close()
        self._partial.unlink(missing_ok=True)


def _private_dirs(assets_dir: Path, prefix_dir: Path) -> None:
    """ASSETS_DIR and the prefix dir under it, created 0700 (Path.mkdir gives ``mode`` to
    the last component only, so each level is made on its own)."""
    for directory in (*reversed(assets_dir.parents), assets_dir, prefix_dir):
        if not directory.is_dir():
            try:
                directory.mkdir(mode=DIR_MODE if directory in (assets_dir, prefix_dir) else 0o755)
            except FileExistsError:
                pass  # another upload made it first


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable before the row that points at it is committed.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
