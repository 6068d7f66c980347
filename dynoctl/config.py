"""Settings: the ONE module that reads os.environ and env files.

Global options arrive from the CLI (each also settable as DYNO_*, which click reads);
everything else a command needs from the environment is read here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

RUNTIMES = ("auto", "local", "docker")
STATE_DIRNAME = ".dyno"
COMPOSE_FILE = Path("stack") / "compose.yml"


def process_environment() -> dict[str, str]:
    """A copy of the environment dynoctl was started with, for child processes."""
    return dict(os.environ)


def is_project(path: Path) -> bool:
    """A Dyno project: a checkout (stack/compose.yml) or a directory dynoctl has made
    one (its .dyno/ state dir, or env files beside the bundled stack)."""
    return (path / COMPOSE_FILE).is_file() or (path / STATE_DIRNAME).is_dir() or \
        any((path / "env").glob("*.env"))


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest parent that is a project (see is_project), else the current directory."""
    start = (start or Path.cwd()).resolve()
    for candidate in (start, *start.parents):
        if is_project(candidate):
            return candidate
    return start


@dataclass(frozen=True)
class StackLayout:
    """Where the stack's files (templates, compose.yml, migrations) were found, and
    where the files dynoctl writes (real env files, state) go."""

    stack_dir: Path
    migrations_dir: Path
    source: str  # "project directory" | "installed package" | "source checkout"
    env_dir: Path
    state_dir: Path

    @property
    def compose_file(self) -> Path:
        return self.stack_dir / "compose.yml"

    @property
    def server_dir(self) -> Path:
        return self.stack_dir / "server"

    @property
    def templates_dir(self) -> Path:
        return self.stack_dir / "env"


def _bundled_root() -> Path:
    # A wheel carries stack/ and migrations/ under dynoctl/_bundled (see setup.py).
    return Path(__file__).resolve().parent / "_bundled"


def _source_checkout_root() -> Path:
    # An editable install runs dynoctl/ straight from a checkout that has stack/ beside it.
    return Path(__file__).resolve().parent.parent


def locate_stack(project_dir: Path) -> StackLayout:
    state_dir = project_dir / STATE_DIRNAME
    if (project_dir / COMPOSE_FILE).is_file():
        stack = project_dir / "stack"
        return StackLayout(stack, project_dir / "migrations", "project directory", stack / "env", state_dir)
    for root, source in ((_bundled_root(), "installed package"), (_source_checkout_root(), "source checkout")):
        if (root / COMPOSE_FILE).is_file():
            # The stack's own files are read-only here; real env files live in the project,
            # and so do its migrations once 'migrate new' has copied them there.
            own = project_dir / "migrations"
            migrations = own if (own / "env.py").is_file() else root / "migrations"
            return StackLayout(root / "stack", migrations, source, project_dir / "env", state_dir)
    from dynoctl.errors import ConfigError

    raise ConfigError(
        f"no Dyno stack found for {project_dir}",
        hint="run dynoctl from a Dyno checkout or pass --project-dir; reinstall dynoctl if its package is incomplete",
    )


@dataclass(frozen=True)
class Settings:
    project_dir: Path
    runtime: str = "auto"
    json: bool = False
    verbosity: int = 0  # -1 quiet, 0 normal, 1+ verbose
    debug: bool = False
    color: bool = True
    lock_wait: float = 0  # seconds to queue for the project lock before exiting 75
    environ: dict[str, str] = field(default_factory=process_environment, repr=False, compare=False)

    @cached_property
    def layout(self) -> StackLayout:
        return locate_stack(self.project_dir)

    @property
    def pg_bindir(self) -> Path | None:
        """DYNO_PG_BINDIR: use an existing PostgreSQL installation's binaries."""
        value = self.environ.get("DYNO_PG_BINDIR")
        return Path(value) if value else None

    @property
    def pg_user(self) -> str:
        """The unprivileged account PostgreSQL runs as when dynoctl runs as root."""
        from dynoctl.pgcluster import DEFAULT_PG_USER

        return self.environ.get("DYNO_PG_USER", DEFAULT_PG_USER)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.environ.get(name, default)


def read_env_file(path: Path) -> dict[str, str]:
    """Key/values of an env file as python-dotenv parses it (no interpolation, no
    environment overrides: the file is the truth)."""
    from dotenv import dotenv_values

    return {k: v or "" for k, v in dotenv_values(path, interpolate=False).items()}
