"""Login and register throttling: fixed-window counters in the database.

The counters live in PostgreSQL (table ``auth_throttle``), not in the process:
with several uvicorn workers, a per-process counter would multiply every limit
by the number of workers, and a restart would reset it. One upsert per attempt
is cheap next to the argon2 hash it guards. Once the database has said that a
key is blocked, this process also remembers it until the window ends, so a
client hammering a blocked key costs no database round trip.

Two keys are counted (limits and window from the settings):

- ``address:<client ip>``: every login and register attempt from that address;
- ``account:<sha256 of the email>``: failed logins (and registers that found the
  email taken) against that account. The email is hashed so that the table
  holds no addresses of accounts that do not exist.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

# Stale rows are deleted by about one attempt in this many.
CLEANUP_ONE_IN = 200
# Bound on the process's memory of blocked keys (many emails tried at once).
MAX_REMEMBERED = 10_000

_HIT = text(
    """
    INSERT INTO auth_throttle AS t (key, window_started_at, hits) VALUES (:key, now(), 1)
    ON CONFLICT (key) DO UPDATE SET
        hits = CASE WHEN t.window_started_at <= now() - make_interval(secs => :window) THEN 1 ELSE t.hits + 1 END,
        window_started_at = CASE WHEN t.window_started_at <= now() - make_interval(secs => :window)
                                 THEN now() ELSE t.window_started_at END
    RETURNING t.hits, EXTRACT(EPOCH FROM t.window_started_at + make_interval(secs => :window) - now())
    """
)
_COUNT = text(
    """
    SELECT hits, EXTRACT(EPOCH FROM window_started_at + make_interval(secs => :window) - now())
    FROM auth_throttle WHERE key = :key AND window_started_at > now() - make_interval(secs => :window)
    """
)
_CLEAR = text("DELETE FROM auth_throttle WHERE key = :key")
_CLEANUP = text("DELETE FROM auth_throttle WHERE window_started_at <= now() - make_interval(secs => :window)")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # whole seconds until the window ends (for Retry-After)


def address_key(host: str | None) -> str:
    return f"address:{(host or 'unknown')[:64]}"


def account_key(email: str) -> str:
    return "account:" + hashlib.sha256(email.encode()).hexdigest()


class Throttle:
    def __init__(self, window_seconds: int):
        self.window = window_seconds
        self._blocked_until: dict[str, float] = {}  # key -> monotonic time; a cache of the database's answer
        self._lock = threading.Lock()

    def hit(self, db: Session, key: str, limit: int) -> Verdict:
        """Count an attempt; refused when it is past ``limit`` in the current window. Commits."""
        remembered = self._remembered(key)
        if remembered:
            return remembered
        hits, remaining = db.execute(_HIT, {"key": key, "window": self.window}).one()
        if random.randrange(CLEANUP_ONE_IN) == 0:
            db.execute(_CLEANUP, {"window": self.window})
        db.commit()
        return self._verdict(key, hits, remaining, limit)

    def check(self, db: Session, key: str, limit: int) -> Verdict:
        """Refused when ``limit`` attempts were already counted in the current window (counts nothing)."""
        remembered = self._remembered(key)
        if remembered:
            return remembered
        row = db.execute(_COUNT, {"key": key, "window": self.window}).one_or_none()
        if row is None:
            return Verdict(True)
        return self._verdict(key, row[0] + 1, row[1], limit)

    def clear(self, db: Session, key: str) -> None:
        db.execute(_CLEAR, {"key": key})
        db.commit()
        with self._lock:
            self._blocked_until.pop(key, None)

    def _verdict(self, key: str, hits: int, remaining: object, limit: int) -> Verdict:
        if hits <= limit:
            return Verdict(True)
        seconds = max(1.0, float(remaining))
        now = time.monotonic()
        with self._lock:
            if len(self._blocked_until) >= MAX_REMEMBERED:
                self._blocked_until = {k: t for k, t in self._blocked_until.items() if t > now}
            if len(self._blocked_until) < MAX_REMEMBERED:  # else only the database remembers it
                self._blocked_until[key] = now + seconds
        return Verdict(False, math.ceil(seconds))

    def _remembered(self, key: str) -> Verdict | None:
        with self._lock:
            until = self._blocked_until.get(key)
            if until is None:
                return None
            left = until - time.monotonic()
            if left <= 0:
                del self._blocked_until[key]
                return None
        return Verdict(False, math.ceil(left))
