"""Streaming a program run through ``Runtime.exec`` (pg_dump, pg_restore, psql, tar in
a container): its stdin fed and its stdout consumed by threads over OS pipes, so
nothing is ever held whole in memory or written to a temporary file."""

from __future__ import annotations

import os
import threading
from typing import BinaryIO, Callable

from dynoctl.errors import DynoctlError

Feed = Callable[[BinaryIO], None]
Sink = Callable[[BinaryIO], None]


class _Worker(threading.Thread):
    def __init__(self, target, *args):
        super().__init__(daemon=True)
        self._fn, self._args = target, args
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._fn(*self._args)
        except BaseException as exc:  # re-raised by the caller's thread
            self.error = exc


def run(runtime, service: str, argv: list[str], *, feed: Feed | None = None, sink: Sink | None = None,
        env: dict[str, str] | None = None) -> int:
    """Run argv next to ``service``; ``feed(writer)`` writes its stdin, ``sink(reader)``
    reads its stdout (both in threads). Returns the exit code; a feed or sink error is
    raised after the program ended (a feed that fails closes stdin early, which ends it)."""
    workers = []
    stdin = stdout = None
    if feed is not None:
        r, w = os.pipe()
        stdin = os.fdopen(r, "rb", buffering=0)
        workers.append(_Worker(_feed, feed, os.fdopen(w, "wb")))
    if sink is not None:
        r, w = os.pipe()
        stdout = os.fdopen(w, "wb", buffering=0)
        workers.append(_Worker(_drain, sink, os.fdopen(r, "rb")))
    for worker in workers:
        worker.start()
    try:
        code = runtime.exec(service, argv, stdin=stdin, stdout=stdout, env=env)
    finally:
        for end in (stdin, stdout):
            if end is not None:
                end.close()  # our copies: the sink now sees end-of-file
        for worker in workers:
            worker.join()
    for worker in workers:
        if worker.error is not None and not isinstance(worker.error, BrokenPipeError):
            raise worker.error
    return code


def _feed(feed: Feed, writer: BinaryIO) -> None:
    try:
        feed(writer)
    finally:
        try:
            writer.close()
        except BrokenPipeError:
            pass


def _drain(sink: Sink, reader: BinaryIO) -> None:
    try:
        sink(reader)
        while reader.read(1 << 16):  # whatever the sink left: the program must not block on a full pipe
            pass
    finally:
        reader.close()


def check(code: int, program: str, hint: str | None = None) -> None:
    if code != 0:
        raise DynoctlError(f"{program} failed (exit status {code}); its messages are above", hint=hint)
