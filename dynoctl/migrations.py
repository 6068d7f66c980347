"""Schema migrations: alembic commands run in-process on a connection dynoctl hands
to migrations/env.py (config.attributes["connection"]), so they work the same on both
runtimes: the database is reached through the runtime's database_url()."""

from __future__ import annotations

from argparse import Namespace
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from dynoctl import db
from dynoctl.errors import ConfigError, DynoctlError, UsageError


@dataclass(frozen=True)
class Revision:
    revision: str
    message: str
    down_revision: str | None = None


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None
    head: str | None
    pending: list[Revision]

    @property
    def up_to_date(self) -> bool:
        return not self.pending and self.current == self.head


@dataclass(frozen=True)
class MigrationResult:
    direction: str  # "upgrade" | "downgrade"
    before: str | None
    after: str | None
    revisions: list[Revision]  # applied (upgrade) or reverted (downgrade), in order


def _config(migrations_dir: Path, connection=None):
    from alembic.config import Config

    if not (migrations_dir / "env.py").is_file():
        raise ConfigError(f"no alembic environment in {migrations_dir}", hint="pass the right --project-dir")
    # quiet: alembic prints status lines straight to stdout, which is ours for data.
    config = Config(cmd_opts=Namespace(quiet=True))
    config.set_main_option("script_location", str(migrations_dir))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _scripts(migrations_dir: Path):
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config(migrations_dir))


def _revision(script) -> Revision:
    down = script.down_revision
    return Revision(script.revision, (script.doc or "").strip(), down if isinstance(down, str) or down is None else ",".join(down))


def head(migrations_dir: Path) -> str | None:
    return _scripts(migrations_dir).get_current_head()


def history(migrations_dir: Path) -> list[Revision]:
    """Every revision, oldest first."""
    return [_revision(s) for s in reversed(list(_scripts(migrations_dir).walk_revisions()))]


def current(conn) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _between(migrations_dir: Path, upper: str | None, lower: str | None) -> list[Revision]:
    """Revisions after ``lower`` up to and including ``upper``, oldest first."""
    if upper is None:
        return []
    scripts = _scripts(migrations_dir)
    try:
        steps = list(scripts.iterate_revisions(upper, lower or "base"))
    except Exception as exc:  # alembic raises several types for unknown/unrelated revisions
        raise UsageError(f"cannot go between revisions {lower or 'base'} and {upper}: {exc}",
                         hint="see 'dynoctl migrate history'") from None
    return [_revision(s) for s in reversed(steps)]


def status(url: str, migrations_dir: Path) -> MigrationStatus:
    with db.connection(url) as conn:
        now = current(conn)
    top = head(migrations_dir)
    return MigrationStatus(now, top, _between(migrations_dir, top, now) if now != top else [])


def resolve(migrations_dir: Path, target: str) -> str | None:
    """A full revision id for 'head', 'base', an id or a unique prefix of one."""
    if target == "base":
        return None
    scripts = _scripts(migrations_dir)
    try:
        return scripts.get_revision(target).revision if target != "head" else scripts.get_current_head()
    except Exception:
        raise UsageError(f"unknown revision {target!r}", hint="see 'dynoctl migrate history'") from None


def plan_downgrade(url: str, migrations_dir: Path, target: str) -> MigrationResult:
    """What ``downgrade(target)`` would revert, newest first, without touching anything."""
    goal = resolve(migrations_dir, target)
    with db.connection(url) as conn:
        now = current(conn)
    reverted = list(reversed(_between(migrations_dir, now, goal)))
    if goal is not None and now is not None and goal != now and not reverted:
        raise UsageError(f"{target} is not below the current revision {now}", hint="use 'dynoctl migrate up' to go forward")
    return MigrationResult("downgrade", now, goal, reverted)


def upgrade(url: str, migrations_dir: Path, target: str = "head") -> MigrationResult:
    goal = resolve(migrations_dir, target)
    return _run(url, migrations_dir, "upgrade", goal or "base")


def downgrade(url: str, migrations_dir: Path, target: str) -> MigrationResult:
    goal = resolve(migrations_dir, target)
    return _run(url, migrations_dir, "downgrade", goal or "base")


def _run(url: str, migrations_dir: Path, direction: str, goal: str) -> MigrationResult:
    from alembic import command

    with db.connection(url) as conn:
        before = current(conn)
        config = _config(migrations_dir, conn)
        try:
            getattr(command, direction)(config, goal)
            conn.commit()
        except DynoctlError:
            raise
        except Exception as exc:
            conn.rollback()
            kind = "" if type(exc).__name__ == "CommandError" else f"{type(exc).__name__}: "
            raise DynoctlError(f"{direction} to {goal} failed: {kind}{db.first_line(exc)}",
                               hint="the transaction was rolled back; see --debug for the traceback") from exc
        after = current(conn)
    if direction == "upgrade":
        revisions = _between(migrations_dir, after, before) if after != before else []
    else:
        revisions = list(reversed(_between(migrations_dir, before, after))) if after != before else []
    return MigrationResult(direction, before, after, revisions)


def new_revision(migrations_dir: Path, message: str, autogenerate: bool, url: str | None) -> Path:
    """Write a new revision script; with autogenerate, diff the models against the database."""
    from alembic import command

    with _alembic_errors("migrate new"):
        if autogenerate:
            with db.connection(url) as conn:
                script = command.revision(_config(migrations_dir, conn), message=message, autogenerate=True)
        else:
            script = command.revision(_config(migrations_dir), message=message)
    return Path(script.path)


def project_copy(migrations_dir: Path, project_dir: Path) -> Path:
    """Where new revisions go: the project's own migrations/. When the stack comes from
    the installed package (or a source checkout elsewhere), its migrations are first
    copied into the project, which then uses that copy (dynoctl.config.locate_stack),
    so nothing is ever written into the installed package."""
    import shutil

    if migrations_dir.resolve().is_relative_to(project_dir.resolve()):
        return migrations_dir
    target = project_dir / "migrations"
    if not (target / "env.py").is_file():
        staging = project_dir / ".migrations.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(migrations_dir, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        staging.rename(target)
    return target


@contextmanager
def _alembic_errors(what: str) -> Iterator[None]:
    """alembic's own message (e.g. 'Target database is not up to date.') as an error the
    user can act on, not an unexpected CommandError."""
    from alembic.util import CommandError

    try:
        yield
    except CommandError as exc:
        raise DynoctlError(f"{what}: {exc}", hint="see 'dynoctl migrate status'") from None

