"""One thin module per command group: options, one core call, one renderer.

Command modules import only typer and dynoctl's light modules at import time: the
heavy ones (sqlalchemy, alembic, docker, psycopg, cryptography, the server) are
imported inside the command functions that use them.
"""

import typer

from dynoctl.context import AppContext


def app_context(ctx: typer.Context) -> AppContext:
    return ctx.find_root().obj
