"""The backup archive format: a plain POSIX tar (GNU headers) that any ``tar`` unpacks.

Members, in order::

    check.age                  (encrypted archives) a known text, to tell a wrong key at once
    identity.age               (passphrase archives) this archive's age identity, passphrase-encrypted
    dump.pgdump.zst[.age]      ``pg_dump -Fc -Z0`` through zstd (then age, when encrypted)
    assets/<sha256>[.age]      each distinct asset content once, named by its sha256
    secrets/<file>.age         (--with-secrets, encrypted only) env files and the JWT key file
    manifest.json              plain JSON: versions, counts, and each member's size and sha256

Unpacking by hand (no lock-in)::

    tar -xf dyno-20260101T000000Z.tar
    zstd -d dump.pgdump.zst -o dump.pgdump          # or: age -d -i key.txt dump.pgdump.zst.age | zstd -d -o dump.pgdump
    pg_restore -d pm_app --no-owner dump.pgdump

Members are streamed: their size is not known before they end, so each header is
written with a placeholder and patched once the member is complete (the archive is a
regular file we own while it is written under its temp name). The manifest's sha256
is over each member's bytes as stored, so ``verify`` checks an encrypted archive
without its key; age (authenticated) then catches anything the key can see.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

BLOCK = 512
RECORD = 20 * BLOCK
CHUNK = 1 << 20
MANIFEST = "manifest.json"
DUMP = "dump.pgdump.zst"
ASSETS = "assets/"
SECRETS = "secrets/"
CHECK = "check.age"
IDENTITY = "identity.age"
CHECK_TEXT = b"dyno-backup key check\n"
AGE = ".age"


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    sha256: str


class MemberWriter(io.RawIOBase):
    """One member being written: bytes go straight to the archive file, hashed."""

    def __init__(self, archive: "TarWriter"):
        self._archive = archive
        self.size = 0
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data)
        self._archive.file.write(view)
        self.hash.update(view)
        self.size += len(view)
        return len(view)


class TarWriter:
    """Writes a tar archive member by member, streaming each member's content."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.members: list[Member] = []

    def open_member(self) -> tuple[int, MemberWriter]:
        start = self.file.tell()
        self.file.write(b"\0" * BLOCK)  # the header, written for real by close_member
        return start, MemberWriter(self)

    def close_member(self, start: int, writer: MemberWriter, name: str) -> Member:
        end = self.file.tell()
        self.file.write(b"\0" * (-writer.size % BLOCK))
        after = self.file.tell()
        self.file.seek(start)
        self.file.write(_header(name, writer.size))
        self.file.seek(after)
        assert end - start - BLOCK == writer.size
        member = Member(name, writer.size, writer.hash.hexdigest())
        self.members.append(member)
        return member

    def discard_member(self, start: int) -> None:
        """Forget a member being written (its content was already in the archive)."""
        self.file.seek(start)
        self.file.truncate()

    def add_bytes(self, name: str, data: bytes) -> Member:
        start, writer = self.open_member()
        writer.write(data)
        return self.close_member(start, writer, name)

    def finish(self) -> None:
        self.file.write(b"\0" * (2 * BLOCK))
        self.file.write(b"\0" * (-self.file.tell() % RECORD))


def _header(name: str, size: int) -> bytes:
    if len(name.encode()) >= 100:
        raise ValueError(f"member name too long for a plain tar header: {name}")
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    info.type = tarfile.REGTYPE
    # GNU format: sizes past 8 GiB are stored in base-256 within the same 512 bytes.
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")


class HashingReader(io.RawIOBase):
    """Reads a stream, hashing and counting; ``on_bytes`` hears the running total."""

    def __init__(self, source: BinaryIO, on_bytes=None, hashing: bool = True):
        self._source = source
        self.hash = hashlib.sha256() if hashing else None
        self.size = 0
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)
        n = _read_into(self._source, view)
        if n:
            if self.hash is not None:
                self.hash.update(view[:n])
            self.size += n
            if self._on_bytes:
                self._on_bytes(self.size)
        return n


def _read_into(source, view: memoryview) -> int:
    if hasattr(source, "readinto"):
        return source.readinto(view) or 0
    data = source.read(len(view))
    view[: len(data)] = data
    return len(data)


def copy(source: BinaryIO, target: BinaryIO) -> int:
    """Stream source to target through one reused buffer (no per-chunk allocations:
    with threads, glibc would keep freed megabyte chunks in its arenas)."""
    buffer = memoryview(bytearray(CHUNK))
    total = 0
    while True:
        n = _read_into(source, buffer)
        if not n:
            return total
        target.write(buffer[:n])
        total += n


# ----------------------------------------------------------------------- reading
def open_tar(path: Path) -> tarfile.TarFile:
    return tarfile.open(path, mode="r:")


def members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for info in tar:
        if info.isfile():
            yield info


def sha256_of(stream: BinaryIO) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return size, digest.hexdigest()
        digest.update(chunk)
        size += len(chunk)


def is_tar(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(BLOCK)
    return len(head) == BLOCK and head[257:262] == b"ustar"


def is_custom_dump(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(5) == b"PGDMP"


def fsync(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())
