"""Server settings, read only from the environment (the env contract).

| variable                   | default                 | meaning                                        |
|----------------------------|-------------------------|------------------------------------------------|
| PORT                       | 8000                    | listening port (used by the container command) |
| DATABASE_URL               | (required)              | Prisma-style postgresql:// URL                 |
| JWT_ACCESS_TOKEN_SECRET    | (required without file) | initial access-token key (>= 32 bytes)         |
| JWT_REFRESH_TOKEN_SECRET   | (required without file) | initial refresh-token key (>= 32 bytes)        |
| JWT_KEYS_FILE              | unset                   | key file; when it exists it replaces the two   |
| FRONTEND_URL               | http://localhost:3000   | the one origin allowed by CORS                 |
| STATUS                     | production              | development: text logs; production: JSON lines |
| ASSETS_DIR                 | ./assets                | where uploaded files are stored                |
| ACCESS_TOKEN_TTL_SECONDS   | 900                     | access JWT lifetime                            |
| REFRESH_TOKEN_TTL_SECONDS  | 604800                  | refresh JWT / session lifetime                 |
| MAX_UPLOAD_BYTES           | 26214400 (25 MiB)       | largest accepted upload                        |
| ARGON2_TIME_COST           | 3                       | argon2id iterations                            |
| ARGON2_MEMORY_KIB          | 65536                   | argon2id memory in KiB                         |
| ARGON2_PARALLELISM         | 4                       | argon2id lanes                                 |
| PASSWORD_HASH_WORKERS      | half the CPUs (>= 1)    | threads hashing passwords (their own pool)     |
| PASSWORD_HASH_QUEUE        | 16                      | hashes that may wait; beyond: 503 Retry-After  |
| AUTH_WINDOW_SECONDS        | 300                     | window of the two login/register limits below  |
| AUTH_ACCOUNT_FAILURES      | 10                      | failed logins per account per window           |
| AUTH_ADDRESS_ATTEMPTS      | 100                     | logins + registers per client address / window |
| AUTH_REFUSAL_DELAY_MS      | 1000                    | a 429/503 of login/register is answered late   |
| REFRESH_GRACE_SECONDS      | 10                      | a just-rotated refresh token still refreshes   |
| USER_STORAGE_QUOTA_BYTES   | 1073741824 (1 GiB)      | total upload bytes per user (all projects)     |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

STATUSES = ("development", "production")


class SettingsError(ValueError):
    """An environment variable is missing or malformed (the message names it)."""


@dataclass(frozen=True)
class Settings:
    database_url: str = field(repr=False)  # may embed a password
    access_token_secret: str | None = field(default=None, repr=False)
    refresh_token_secret: str | None = field(default=None, repr=False)
    jwt_keys_file: Path | None = None
    port: int = 8000
    frontend_url: str = "http://localhost:3000"
    status: str = "production"
    assets_dir: Path = Path("assets")
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 604800
    max_upload_bytes: int = 25 * 1024 * 1024
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    password_hash_workers: int = field(default_factory=lambda: max(1, (os.cpu_count() or 1) // 2))
    password_hash_queue: int = 16
    auth_window_seconds: int = 300
    auth_account_failures: int = 10
    auth_address_attempts: int = 100
    auth_refusal_delay_ms: int = 1000
    refresh_grace_seconds: int = 10
    user_storage_quota_bytes: int = 1024 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise SettingsError(f"STATUS must be one of {', '.join(STATUSES)}, not {self.status!r}")
        if not self.database_url:
            raise SettingsError("DATABASE_URL is required")
        object.__setattr__(self, "frontend_url", _origin_of(self.frontend_url))

    @property
    def development(self) -> bool:
        return self.status == "development"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        optional = {
            "port": _int(env, "PORT"),
            "frontend_url": env.get("FRONTEND_URL"),
            "status": env.get("STATUS"),
            "assets_dir": _path(env, "ASSETS_DIR"),
            "access_token_ttl_seconds": _int(env, "ACCESS_TOKEN_TTL_SECONDS"),
            "refresh_token_ttl_seconds": _int(env, "REFRESH_TOKEN_TTL_SECONDS"),
            "max_upload_bytes": _int(env, "MAX_UPLOAD_BYTES"),
            "argon2_time_cost": _int(env, "ARGON2_TIME_COST"),
            "argon2_memory_kib": _int(env, "ARGON2_MEMORY_KIB"),
            "argon2_parallelism": _int(env, "ARGON2_PARALLELISM"),
            "password_hash_workers": _int(env, "PASSWORD_HASH_WORKERS"),
            "password_hash_queue": _int(env, "PASSWORD_HASH_QUEUE"),
            "auth_window_seconds": _int(env, "AUTH_WINDOW_SECONDS"),
            "auth_account_failures": _int(env, "AUTH_ACCOUNT_FAILURES"),
            "auth_address_attempts": _int(env, "AUTH_ADDRESS_ATTEMPTS"),
            "auth_refusal_delay_ms": _int(env, "AUTH_REFUSAL_DELAY_MS"),
            "refresh_grace_seconds": _int(env, "REFRESH_GRACE_SECONDS"),
            "user_storage_quota_bytes": _int(env, "USER_STORAGE_QUOTA_BYTES"),
        }
        return cls(
            database_url=env.get("DATABASE_URL", ""),
            access_token_secret=env.get("JWT_ACCESS_TOKEN_SECRET") or None,
            refresh_token_secret=env.get("JWT_REFRESH_TOKEN_SECRET") or None,
            jwt_keys_file=_path(env, "JWT_KEYS_FILE"),
            **{name: value for name, value in optional.items() if value is not None},
        )


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a positive integer, not {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be a positive integer, not {raw!r}")
    return value


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else None


def _origin_of(url: str) -> str:
    """Reduce FRONTEND_URL to the origin browsers send (no path, no trailing slash)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"FRONTEND_URL must be an http(s) URL, not {url!r}")
    return f"{parts.scheme}://{parts.netloc}"
