"""Encryption of backup members with age (https://age-encryption.org/v1), through
the ``pyrage`` bindings: authenticated (ChaCha20-Poly1305 per 64 KiB chunk),
streamed, and readable by the ``age``/``rage`` command-line tools.

Three ways to hold the key:
- recipients (``age1...`` public keys): the host making backups can write them but
  never read old ones; restore needs the matching identity file;
- an identity file (``AGE-SECRET-KEY-1...``): encrypts to its own public key;
- a passphrase: each archive gets a fresh X25519 identity, stored in the archive
  encrypted with the passphrase (age's scrypt recipient, memory-hard). pyrage's
  passphrase API takes whole byte strings, so only that small identity goes through
  it; the members themselves stream to the identity's public key.

Secrets (identities, passphrases) never reach argv, output or logs; this module
never writes a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dynoctl.errors import DynoctlError, Refused, UsageError

WRONG_KEY_HINT = "pass the identity file (--identity) or passphrase (--passphrase-file / DYNO_BACKUP_PASSPHRASE) the backup was made with"


class WrongKey(Refused):
    pass


@dataclass(frozen=True)
class Keys:
    """What the user gave to encrypt (recipients, passphrase) or decrypt (identities, passphrase)."""

    recipients: tuple[str, ...] = ()
    identities: tuple[str, ...] = field(default=(), repr=False)
    passphrase: str | None = field(default=None, repr=False)

    @property
    def any(self) -> bool:
        return bool(self.recipients or self.identities or self.passphrase)

    @property
    def method(self) -> str:
        return "age-passphrase" if self.passphrase and not (self.recipients or self.identities) else "age-recipients"


def load_keys(recipients: list[str], recipients_files: list[Path], identity_files: list[Path],
              passphrase_file: Path | None, passphrase_env: str | None) -> Keys:
    """Read the options into Keys; unreadable or malformed files are usage errors."""
    import pyrage

    found = list(recipients)
    for path in recipients_files:
        found += _key_lines(path, "recipients file")
    identities = []
    for path in identity_files:
        identities += [line for line in _key_lines(path, "identity file") if line.startswith("AGE-SECRET-KEY-")]
        if not identities:
            raise UsageError(f"{path} holds no age identity (AGE-SECRET-KEY-...)", hint="make one with 'age-keygen -o FILE'")
    for text in found:
        try:
            pyrage.x25519.Recipient.from_str(text)
        except Exception:
            raise UsageError(f"not an age recipient: {text[:12]}...", hint="age public keys start with 'age1'") from None
    for text in identities:
        try:
            pyrage.x25519.Identity.from_str(text)
        except Exception:
            raise UsageError("an identity file holds a malformed age identity", hint="check the file") from None
    passphrase = None
    if passphrase_file is not None:
        passphrase = _read(passphrase_file, "passphrase file").rstrip("\r\n")
    elif passphrase_env:
        passphrase = passphrase_env
    if passphrase is not None and len(passphrase) < 8:
        raise UsageError("the passphrase is shorter than 8 characters", hint="choose a longer one")
    return Keys(tuple(found), tuple(identities), passphrase)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror}") from None


def _key_lines(path: Path, what: str) -> list[str]:
    return [line.strip() for line in _read(path, what).splitlines() if line.strip() and not line.startswith("#")]


def generate_identity() -> str:
    import pyrage

    return str(pyrage.x25519.Identity.generate())


def public_key(identity: str) -> str:
    import pyrage

    return str(pyrage.x25519.Identity.from_str(identity).to_public())


def wrap_identity(identity: str, passphrase: str) -> bytes:
    import pyrage

    return pyrage.passphrase.encrypt(identity.encode(), passphrase)


def unwrap_identity(blob: bytes, passphrase: str) -> str:
    import pyrage

    try:
        return pyrage.passphrase.decrypt(blob, passphrase).decode()
    except pyrage.DecryptError:
        raise WrongKey("wrong passphrase for this backup", hint=WRONG_KEY_HINT) from None


def encrypt_stream(source: BinaryIO, target: BinaryIO, recipients: list[str]) -> None:
    import pyrage

    keys = [pyrage.x25519.Recipient.from_str(r) for r in recipients]
    pyrage.encrypt_io(source, target, keys)


def encrypt_bytes(data: bytes, recipients: list[str]) -> bytes:
    import pyrage

    return pyrage.encrypt(data, [pyrage.x25519.Recipient.from_str(r) for r in recipients])


def decrypt_stream(source: BinaryIO, target: BinaryIO, identities: list[str]) -> None:
    import pyrage

    try:
        pyrage.decrypt_io(source, target, [pyrage.x25519.Identity.from_str(i) for i in identities])
    except pyrage.DecryptError as exc:
        if "No matching keys" in str(exc):
            raise WrongKey("the given key does not open this backup", hint=WRONG_KEY_HINT) from None
        raise DynoctlError(f"decryption failed (the archive is damaged): {exc}",
                           hint="verify the archive with 'dynoctl backup verify'") from None


def decrypt_bytes(data: bytes, identities: list[str]) -> bytes:
    import io

    out = io.BytesIO()
    decrypt_stream(io.BytesIO(data), out, identities)
    return out.getvalue()
