"""Password hashing with argon2id (memory-hard); cost parameters come from settings."""

from __future__ import annotations

import os
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from dynoserver.settings import Settings


class Passwords:
    def __init__(self, settings: Settings):
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # Each hash holds ARGON2_MEMORY_KIB of RAM; without a cap, a burst of logins
        # on the 40-thread pool could take 40 times that. More slots than CPUs gain nothing.
        self._slots = threading.BoundedSemaphore(os.cpu_count() or 1)
        # Verified against when the email is unknown, so that a login costs the
        # same whether or not the account exists (no user enumeration by timing).
        self._decoy_hash = self.hash("decoy password")

    def hash(self, password: str) -> str:
        with self._slots:
            return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            with self._slots:
                matches = self._hasher.verify(password_hash or self._decoy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return matches and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
