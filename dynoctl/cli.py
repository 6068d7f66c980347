"""The root command. ``DynoGroup.main`` is the ONE place exceptions become exit codes."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
# Typer >= 0.29 carries its own copy of click; its exceptions are the ones raised.
from typer._click import exceptions as click_exc
from typer.core import TyperGroup

from dynoctl.config import RUNTIMES, Settings, find_project_dir
from dynoctl.context import AppContext
from dynoctl.errors import DynoctlError, ExitStatus
from dynoctl.output import Output

RuntimeChoice = Enum("RuntimeChoice", {name: name for name in RUNTIMES}, type=str)

_current: AppContext | None = None  # set by the root callback; read when reporting errors


class DynoGroup(TyperGroup):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        global _current
        _current = None  # set again by the root callback of this invocation
        status = run_guarded(lambda: super(DynoGroup, self).main(
            args, prog_name, complete_var, standalone_mode=False, **extra))
        if standalone_mode:
            sys.exit(status)
        return status


def run_guarded(invoke) -> int:
    """Run the command; map every outcome to a documented exit status."""
    try:
        rv = invoke()
        return rv if isinstance(rv, int) else ExitStatus.OK
    except DynoctlError as exc:
        _out().error(exc.message, exc.hint, exc.details)
        _traceback_if_debug()
        return exc.exit_status
    except typer.Exit as exc:
        return exc.exit_code
    except click_exc.UsageError as exc:
        exc.show()
        return ExitStatus.USAGE
    except (KeyboardInterrupt, typer.Abort):
        _out().error("interrupted")
        return ExitStatus.INTERRUPTED
    except click_exc.ClickException as exc:
        exc.show()
        return ExitStatus.FAILED
    except BrokenPipeError:
        return ExitStatus.FAILED
    except Exception as exc:  # a bug: say so briefly; the traceback is for --debug
        _out().error(f"unexpected {type(exc).__name__}", hint="run again with --debug for the traceback, and report it")
        _traceback_if_debug()
        return ExitStatus.FAILED


def _out() -> Output:
    return _current.out if _current else Output()


def _traceback_if_debug() -> None:
    if _current and _current.settings.debug:
        import traceback

        traceback.print_exc(file=sys.stderr)


app = typer.Typer(
    cls=DynoGroup,
    name="dynoctl",
    help="Operate a Dyno stack: bring it up and down, migrate its schema, check its configuration.",
    no_args_is_help=True,
    add_completion=False,
    # Tracebacks with local variables could show secrets; --debug prints plain ones.
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    project_dir: Optional[Path] = typer.Option(
        None, "--project-dir", envvar="DYNO_PROJECT_DIR", file_okay=False,
        help="The Dyno project (default: nearest parent holding stack/compose.yml, else the current directory).",
    ),
    runtime: RuntimeChoice = typer.Option(
        "auto", "--runtime", envvar="DYNO_RUNTIME", case_sensitive=False,
        help="Where the stack runs: local (embedded PostgreSQL + server process), docker, or auto (docker when an engine answers).",
    ),
    json_: bool = typer.Option(False, "--json", envvar="DYNO_JSON", help="Print results as one JSON document."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, envvar="DYNO_VERBOSE", help="More detail on stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", envvar="DYNO_QUIET", help="Only errors on stderr."),
    debug: bool = typer.Option(False, "--debug", envvar="DYNO_DEBUG", help="Show tracebacks and debug logs."),
    no_color: bool = typer.Option(False, "--no-color", envvar=["DYNO_NO_COLOR", "NO_COLOR"], help="Plain output."),
    wait: float = typer.Option(0, "--wait", envvar="DYNO_WAIT", min=0, metavar="SECONDS",
                               help="When another run holds the project lock, queue this long instead of exiting 75."),
) -> None:
    global _current
    verbosity = -1 if quiet else verbose + (2 if debug else 0)
    settings = Settings(
        project_dir=(project_dir or find_project_dir()).resolve(),
        runtime=runtime.value,
        json=json_,
        verbosity=verbosity,
        debug=debug,
        color=not no_color,
        lock_wait=wait,
    )
    _current = ctx.obj = AppContext(settings, Output(json_, verbosity, not no_color))
    if verbose or debug:  # logging costs start-up time; unconfigured, it still shows warnings
        import logging

        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _register() -> None:
    from dynoctl.commands import env, history, info, migrate, stack

    for command in (stack.up, stack.down, stack.status, stack.logs, stack.restart):
        app.command()(command)
    app.add_typer(migrate.app, name="migrate")
    app.add_typer(env.app, name="env")
    app.command("history")(history.history)
    app.command("version")(info.version)
    app.command("rotate-secrets")(__import__("dynoctl.commands.rotate", fromlist=["rotate"]).rotate_secrets)


_register()


def main() -> None:
    app()
