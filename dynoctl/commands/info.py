"""dynoctl version."""

from __future__ import annotations

import sys

import typer

from dynoctl import __version__
from dynoctl.commands import app_context
from dynoctl.errors import DynoctlError


def version(ctx: typer.Context) -> None:
    """Show dynoctl's version and where it found the project and the stack files."""
    app_ctx = app_context(ctx)
    settings = app_ctx.settings
    info = {"dynoctl": __version__, "python": sys.version.split()[0], "project_dir": str(settings.project_dir)}
    try:
        layout = settings.layout
        info.update(stack_dir=str(layout.stack_dir), stack_source=layout.source,
                    migrations_dir=str(layout.migrations_dir), env_dir=str(layout.env_dir),
                    state_dir=str(layout.state_dir))
    except DynoctlError as exc:  # version must work even where no stack is found
        info.update(stack_dir=None, stack_source=exc.message)
    app_ctx.out.result(info, lambda d: "\n".join(f"{k:<15} {v if v is not None else '-'}" for k, v in d.items()))
