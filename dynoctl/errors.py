"""Exit codes and the one error type every command raises.

Core modules raise a DynoctlError subclass; only ``dynoctl.cli.main`` turns it into
``error: <message>`` + ``hint: <hint>`` on stderr and the matching exit code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    REFUSED = 3  # a safety or configuration check said no
    UNREACHABLE = 4  # database, Docker engine or server did not answer
    PARTIAL = 5  # some of the work failed
    BUSY = 75  # another run holds the lock (EX_TEMPFAIL)
    INTERRUPTED = 130  # Ctrl-C


class DynoctlError(Exception):
    """An error the user can act on: a one-line message and a hint."""

    exit_status: ExitStatus = ExitStatus.FAILED

    def __init__(self, message: str, hint: str | None = None, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or []  # supporting lines (e.g. a log tail), shown after the message


class UsageError(DynoctlError):
    exit_status = ExitStatus.USAGE


class Refused(DynoctlError):
    exit_status = ExitStatus.REFUSED


class ConfigError(Refused):
    """A missing or invalid env file, template or setting."""


class Unreachable(DynoctlError):
    exit_status = ExitStatus.UNREACHABLE


class NotRunning(Unreachable):
    pass


class Busy(DynoctlError):
    exit_status = ExitStatus.BUSY


class PartlyFailed(DynoctlError):
    exit_status = ExitStatus.PARTIAL
