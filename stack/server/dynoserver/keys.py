"""JWT keys: one key set per purpose (access, refresh), reloadable at run time.

Every token carries the ``kid`` of the key that signed it. A purpose has one
*signing* key and any number of verify-only keys, so keys rotate without
logging anybody out: add a new key (verify-only), promote it to signing (old
tokens still verify with the old key), and retire the old key once tokens it
signed have expired (the refresh TTL at most).

Sources, in order:

1. ``JWT_KEYS_FILE``, when set and the file exists: the source of truth.
2. ``JWT_ACCESS_TOKEN_SECRET`` / ``JWT_REFRESH_TOKEN_SECRET``: one signing key
   each, with ``kid = derive_kid(purpose, secret)``.

Once a key file has been loaded it stays the only source: a reload that finds
it missing fails (and keeps the running set) rather than fall back to the env
secrets, which a finished rotation has retired.

Key file format (UTF-8 JSON; write it atomically: temp file, fsync, rename)::

    {
      "access": {
        "signing": "a-2024-06",
        "keys": [
          {"kid": "a-2024-06", "secret": "<at least 32 characters>"},
          {"kid": "a-2024-01", "secret": "<...>"}
        ]
      },
      "refresh": {"signing": "r-2024-01", "keys": [{"kid": "r-2024-01", "secret": "<...>"}]}
    }

``dynoctl rotate-secrets`` adds bookkeeping the server ignores: ``created_at`` and
``retire_after`` (epoch seconds) on keys, and ``pending`` on a purpose (a kid added
verify-only whose promotion has not happened yet: where an interrupted rotation
stopped). Unknown fields are ignored here, so files stay readable both ways.

Secrets are used as their UTF-8 bytes, exactly like the env secrets, so the
first file can carry the env secrets under their derived kids and tokens issued
before the switch keep verifying. The server re-reads the file on SIGHUP
(``KeyStore.reload``); a file that fails to load leaves the running key set in
place. ``KeySet.version`` is an opaque hash that changes whenever a kid, a
secret or a signing choice changes; ``GET /health`` reports it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

PURPOSES = ("access", "refresh")
MIN_SECRET_BYTES = 32  # HS256 wants a key at least as long as its output (RFC 7518 3.2)


class KeyConfigError(ValueError):
    """The keys cannot be loaded. Messages never contain secret material."""


@dataclass(frozen=True)
class Key:
    kid: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class KeyRing:
    """The keys of one purpose: sign with ``signing``, verify with any of ``by_kid``."""

    signing: Key
    by_kid: Mapping[str, Key]


@dataclass(frozen=True)
class KeySet:
    access: KeyRing
    refresh: KeyRing
    version: str

    def ring(self, purpose: str) -> KeyRing:
        return self.access if purpose == "access" else self.refresh


def derive_kid(purpose: str, secret: str) -> str:
    """A stable kid for an env secret that reveals nothing about it."""
    digest = hashlib.sha256(f"dynoserver-kid-v1\0{purpose}\0".encode() + secret.encode())
    return f"env-{digest.hexdigest()[:16]}"


def keyset_from_secrets(access_secret: str, refresh_secret: str) -> KeySet:
    sources = {
        "access": ("JWT_ACCESS_TOKEN_SECRET", access_secret),
        "refresh": ("JWT_REFRESH_TOKEN_SECRET", refresh_secret),
    }
    document = {}
    for purpose, (variable, secret) in sources.items():
        if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
            raise KeyConfigError(f"{variable} must be at least {MIN_SECRET_BYTES} bytes")
        kid = derive_kid(purpose, secret)
        document[purpose] = {"signing": kid, "keys": [{"kid": kid, "secret": secret}]}
    return keyset_from_document(document)


# Who besides the owner may touch the key file: its group may read it (the docker
# runtime's container reads it through its group), nobody else may read it, and nobody
# but the owner may change it (a writer could plant a key and forge any token).
FORBIDDEN_KEY_FILE_BITS = 0o027


def key_file_mode_problem(mode: int) -> str | None:
    """Why a key file with this st_mode must not be used; None when its mode is safe.
    dynoctl's ``env check`` asks the same question."""
    bad = stat.S_IMODE(mode) & FORBIDDEN_KEY_FILE_BITS
    if not bad:
        return None
    who = "other users can read it" if bad & 0o004 else "users other than its owner can change it"
    return f"mode {stat.S_IMODE(mode):04o}: {who}; run 'chmod 600' on it (0640 when a container reads it through its group)"


def keyset_from_file(path: Path) -> KeySet:
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode  # of the file read, not of a later replacement
            document = json.loads(handle.read().decode("utf-8"))
    except OSError as exc:
        raise KeyConfigError(f"cannot read key file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        # The exception text could quote file content; report the position only.
        position = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise KeyConfigError(f"key file {path} is not valid UTF-8 JSON{position}") from None
    keyset = keyset_from_document(document)
    problem = key_file_mode_problem(mode)
    if problem:
        # Refused, not used with a warning: its secrets may already be copied, and every
        # token signed with them could be forged.
        raise KeyConfigError(f"key file {path} refused: {problem}")
    return keyset


def keyset_from_document(document: object) -> KeySet:
    """Validate a parsed key-file document (see the module docstring) into a KeySet."""
    if not isinstance(document, dict):
        raise KeyConfigError("key file must hold a JSON object")
    rings = {purpose: _ring(purpose, document.get(purpose)) for purpose in PURPOSES}
    return KeySet(access=rings["access"], refresh=rings["refresh"], version=_version(rings))


def _ring(purpose: str, entry: object) -> KeyRing:
    if not isinstance(entry, dict) or not isinstance(entry.get("keys"), list):
        raise KeyConfigError(f"{purpose}: expected an object with 'signing' and a 'keys' list")
    keys = [_key(purpose, item) for item in entry["keys"]]
    by_kid = {key.kid: key for key in keys}
    if len(by_kid) != len(keys):
        raise KeyConfigError(f"{purpose}: duplicate kid")
    signing_kid = entry.get("signing")
    # A list or object here would be unhashable: refuse it as a config error, not a TypeError.
    signing = by_kid.get(signing_kid) if isinstance(signing_kid, str) else None
    if signing is None:
        raise KeyConfigError(f"{purpose}: 'signing' must name one of the listed kids")
    return KeyRing(signing=signing, by_kid=MappingProxyType(by_kid))


def _key(purpose: str, item: object) -> Key:
    if not isinstance(item, dict) or not isinstance(item.get("kid"), str) or not isinstance(item.get("secret"), str):
        raise KeyConfigError(f"{purpose}: every key needs a string 'kid' and 'secret'")
    kid, secret = item["kid"], item["secret"].encode("utf-8")
    if not kid or len(kid) > 64:
        raise KeyConfigError(f"{purpose}: kid must be 1 to 64 characters")
    if len(secret) < MIN_SECRET_BYTES:
        raise KeyConfigError(f"{purpose}: key {kid!r} is shorter than {MIN_SECRET_BYTES} bytes")
    return Key(kid=kid, secret=secret)


def _version(rings: Mapping[str, KeyRing]) -> str:
    # Secrets enter only through their own sha256, so the version reveals nothing.
    canonical = {
        purpose: {
            "signing": ring.signing.kid,
            "keys": sorted((kid, hashlib.sha256(key.secret).hexdigest()) for kid, key in ring.by_kid.items()),
        }
        for purpose, ring in rings.items()
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:16]


class KeyStore:
    """Holds the current KeySet; ``reload`` swaps in a new one atomically.

    Readers take ``store.current`` once per operation: the KeySet is immutable
    and rebinding an attribute is atomic, so a reload never disturbs a request
    in flight.
    """

    def __init__(self, keys_file: Path | None, access_secret: str | None, refresh_secret: str | None):
        self._keys_file = keys_file
        self._access_secret = access_secret
        self._refresh_secret = refresh_secret
        self._file_loaded = False
        self.current = self._load()

    def reload(self) -> KeySet:
        """Re-read the key sources; on error raise KeyConfigError and keep the current set."""
        self.current = self._load()
        return self.current

    def _load(self) -> KeySet:
        if self._keys_file is not None and (self._file_loaded or self._keys_file.exists()):
            # After the first successful load a missing file is an error (keyset_from_file
            # raises KeyConfigError), never a silent return to the retired env secrets.
            keyset = keyset_from_file(self._keys_file)
            self._file_loaded = True
            return keyset
        if not self._access_secret or not self._refresh_secret:
            raise KeyConfigError(
                "JWT_ACCESS_TOKEN_SECRET and JWT_REFRESH_TOKEN_SECRET are required"
                " unless JWT_KEYS_FILE names an existing file"
            )
        return keyset_from_secrets(self._access_secret, self._refresh_secret)
