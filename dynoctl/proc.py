"""The one wrapper for external programs.

Always an argv list, never a shell. Secrets travel in ``env`` (merged over the
environment dynoctl was started with) and are never logged: the debug log shows the
argv and only the *names* of the extra variables.
"""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from dynoctl.errors import DynoctlError

log = logging.getLogger("dynoctl.proc")


@dataclass(frozen=True)
class RunAs:
    """An unprivileged account to run a program as (root only)."""

    user: str

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    @property
    def gid(self) -> int:
        return pwd.getpwnam(self.user).pw_gid

    @property
    def home(self) -> str:
        return pwd.getpwnam(self.user).pw_dir


class ProgramFailed(DynoctlError):
    def __init__(self, argv: Sequence[str], returncode: int, output: str):
        tail = " ".join(output.strip().splitlines()[-3:]) if output else ""
        super().__init__(f"{Path(argv[0]).name} exited with status {returncode}: {tail}".rstrip(": "))
        self.returncode = returncode
        self.output = output


def child_env(extra: Mapping[str, str] | None = None, run_as: RunAs | None = None) -> dict[str, str]:
    from dynoctl.config import process_environment

    env = process_environment()
    if run_as is not None:
        # Don't hand root's HOME to a program running as another user.
        env["HOME"] = run_as.home
        env["USER"] = env["LOGNAME"] = run_as.user
    env.update(extra or {})
    return env


def _describe(argv: Sequence[str], extra_env: Mapping[str, str] | None) -> str:
    names = f" (env: {', '.join(sorted(extra_env))})" if extra_env else ""
    return " ".join(str(a) for a in argv) + names


def _user_kwargs(run_as: RunAs | None) -> dict:
    if run_as is None:
        return {}
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    run_as: RunAs | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    check: bool = True,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program to completion, capturing its output as text."""
    argv = [str(a) for a in argv]
    log.debug("run: %s", _describe(argv, env))
    try:
        done = subprocess.run(
            argv,
            env=child_env(env, run_as),
            cwd=cwd,
            timeout=timeout,
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            **_user_kwargs(run_as),
        )
    except FileNotFoundError as exc:
        raise DynoctlError(f"program not found: {argv[0]}") from exc
    if check and done.returncode != 0:
        raise ProgramFailed(argv, done.returncode, done.stderr or done.stdout)
    return done


def spawn(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    run_as: RunAs | None = None,
    cwd: Path | None = None,
    stdin=subprocess.DEVNULL,
    stdout=None,
    stderr=None,
    detach: bool = False,
) -> subprocess.Popen:
    """Start a program without waiting; ``detach`` puts it in its own session so it
    outlives dynoctl and a Ctrl-C in the terminal does not reach it."""
    argv = [str(a) for a in argv]
    log.debug("spawn: %s", _describe(argv, env))
    return subprocess.Popen(
        argv,
        env=child_env(env, run_as),
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=detach,
        **_user_kwargs(run_as),
    )


def is_root() -> bool:
    return os.geteuid() == 0
