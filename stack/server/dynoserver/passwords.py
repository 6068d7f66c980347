"""Password hashing with argon2id (memory-hard) in its own bounded, load-shedding pool.

Hashing never runs on the request thread pool: a burst of logins would take all
of its threads and starve every other request (60 concurrent logins once pushed
an authenticated read from 2.6 ms to 2.5 s). Here a few dedicated threads hash,
at a lower CPU priority than the request handling, and at most
PASSWORD_HASH_QUEUE more may wait; beyond that ``Overloaded`` is raised at once
(the API answers 503 with Retry-After) instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from dynoserver.settings import Settings

T = TypeVar("T")
log = logging.getLogger("dynoserver.passwords")
# Added to the hashing threads' nice value (Linux: per thread, inherited by the
# threads argon2 starts for its lanes), so request handling preempts hashing.
HASH_THREAD_NICENESS = 10


class Overloaded(Exception):
    """Every hashing slot and queue place is taken: try again shortly."""


class Passwords:
    def __init__(self, settings: Settings):
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # Each hash holds ARGON2_MEMORY_KIB of RAM: the workers bound the memory too.
        self._pool = ThreadPoolExecutor(
            settings.password_hash_workers, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self._capacity = settings.password_hash_workers + settings.password_hash_queue
        self._admitted = 0
        self._lock = threading.Lock()
        # Verified against when the email is unknown, so that a login costs the
        # same whether or not the account exists (no user enumeration by timing).
        self._decoy_hash = self._hasher.hash("decoy password")

    @property
    def saturated(self) -> bool:
        """True when a new hash would be refused: lets callers shed load before any other work."""
        return self._admitted >= self._capacity

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await self._run(self._verify, password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        try:
            matches = self._hasher.verify(password_hash or self._decoy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return matches and password_hash is not None

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        with self._lock:
            if self._admitted >= self._capacity:
                raise Overloaded()
            self._admitted += 1
        try:
            future: Future[T] = self._pool.submit(function, *args)
        except BaseException:
            self._release()
            raise
        # Released when the hash ends, not when the request does: a client that
        # hangs up does not stop the thread, and its hash still holds the slot.
        future.add_done_callback(lambda _: self._release())
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: hashing still works
        log.debug("could not lower the hashing threads' priority")
