"""One thin module per command group: options, one core call, one renderer.

Command modules import only typer and dynoctl's light modules at import time: the
heavy ones (sqlalchemy, alembic, docker, psycopg, cryptography, the server) are
imported inside the command functions that use them.
"""

from contextlib import contextmanager
from typing import Iterator

import typer

from dynoctl.context import AppContext


def app_context(ctx: typer.Context) -> AppContext:
    return ctx.find_root().obj


@contextmanager
def exclusive(app_ctx: AppContext) -> Iterator[None]:
    """Hold the project lock (dynoctl.lock) around a command that changes the stack."""
    from dynoctl.lock import project_lock

    with project_lock(app_ctx.settings.layout.state_dir, app_ctx.command, wait=app_ctx.settings.lock_wait,
                      on_wait=app_ctx.out.info):
        yield


def recorded(app_ctx: AppContext, job: str):
    """Record this run of ``job`` in the run history (dynoctl.history), named as the
    lock names it: the subcommand words, never option values."""
    from dynoctl.history import recorded_run

    return recorded_run(app_ctx.settings.layout.state_dir, job, app_ctx.command)


def require_project(app_ctx: AppContext) -> None:
    """Commands that work on an existing project say so outside one, rather than
    treating any directory as a (stray) project."""
    from dynoctl.config import is_project
    from dynoctl.errors import ConfigError

    project = app_ctx.settings.project_dir
    if not is_project(project):
        raise ConfigError(
            f"{project} is not a Dyno project (no stack/compose.yml, .dyno/ or env/ here or above)",
            hint="cd into your project or pass --project-dir; to make this directory one, run 'dynoctl up' "
                 "(or 'dynoctl env init')")
