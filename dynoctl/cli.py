"""The root command. ``DynoGroup.main`` is the ONE place exceptions become exit codes."""

from __future__ import annotations

import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
# Typer >= 0.29 carries its own copy of click; its exceptions are the ones raised.
from typer._click import exceptions as click_exc
from typer.core import TyperGroup, TyperOption

from dynoctl.config import RUNTIMES, Settings, find_project_dir
from dynoctl.context import AppContext
from dynoctl.errors import DynoctlError, ExitStatus
from dynoctl.output import Output

RuntimeChoice = Enum("RuntimeChoice", {name: name for name in RUNTIMES}, type=str)

_current: AppContext | None = None  # set by the root callback; read when reporting errors

# Global options, also accepted after the subcommand ('dynoctl status --json'): the
# ones that take a value, and the flags. DynoGroup.main moves them before it.
GLOBAL_VALUE_OPTIONS = ("--project-dir", "--runtime", "--wait")
GLOBAL_FLAGS = ("--json", "--verbose", "-v", "-vv", "-vvv", "--quiet", "-q", "--debug", "--no-color")


def hoist_global_options(args: list[str]) -> list[str]:
    """``dynoctl status --json`` -> ``dynoctl --json status``. Only tokens after the
    first word that is not an option (the subcommand) move, only recognised global
    options, and never after ``--``. The root has no arguments of its own, so the
    first bare word is the subcommand."""
    head, rest = [], list(args)
    while rest and rest[0].startswith("-"):
        token = rest.pop(0)
        head.append(token)
        if token in GLOBAL_VALUE_OPTIONS and rest:
            head.append(rest.pop(0))
    moved, kept = [], []
    i = 0
    while i < len(rest):
        token = rest[i]
        if token == "--":
            kept += rest[i:]
            break
        name = token.split("=", 1)[0]
        if token in GLOBAL_FLAGS:
            moved.append(token)
        elif name in GLOBAL_VALUE_OPTIONS:
            moved.append(token)
            if "=" not in token and i + 1 < len(rest):
                i += 1
                moved.append(rest[i])
        else:
            kept.append(token)
        i += 1
    return head + moved + kept


def command_words(args: list[str]) -> str:
    """'dynoctl migrate new' for the args as hoisted: the subcommand words, up to the
    first option (whose values, a message or a path, are not for others to read)."""
    words = []
    rest = list(args)
    while rest and rest[0].startswith("-"):  # the global options, all in front now
        token = rest.pop(0)
        if token in GLOBAL_VALUE_OPTIONS and rest:
            rest.pop(0)
    for token in rest:
        if token.startswith("-"):
            break
        words.append(token)
    return " ".join(["dynoctl", *words[:3]])


_command = "dynoctl"


def _interrupt_on_sigterm(signum, frame):
    # SIGTERM is handled like Ctrl-C: whatever the command started is cleaned up
    # (dynoctl.stack.up stops what it started), then exit 130 'interrupted'.
    raise KeyboardInterrupt


class DynoGroup(TyperGroup):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        global _current, _command
        _current = None  # set again by the root callback of this invocation
        whole_process = args is None  # the console script, not a test's in-process call
        args = hoist_global_options(list(sys.argv[1:] if args is None else args))
        _command = command_words(args)
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None) or \
                getattr(signal.getsignal(signal.SIGTERM), "__module__", "") in ("__main__", "dynoctl.__main__"):
            signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
        status = run_guarded(lambda: super(DynoGroup, self).main(
            args, prog_name, complete_var, standalone_mode=False, **extra))
        if standalone_mode:
            if whole_process:
                # The work is done and reported: an interrupt now changes nothing, and
                # while the interpreter shuts down it would end the process with SIGINT's
                # default action instead of this status.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            sys.exit(status)
        return status


def _value_placeholder(display_type):
    """How help names an option's value: nothing for flags and counters (no '<bool>' or
    '<int>' after them), and the plain type for the rest: '<int>', not '<int range>'
    (the range is in the text), '<path>', not '<list[Path]>' ("Repeatable" is)."""
    import re

    def placeholder(self, ctx):
        if self.is_flag or self.count:
            return None
        label = display_type(self, ctx)
        return re.sub(r"list\[(.*)\]|(\w+) range", lambda m: (m.group(1) or m.group(2)).lower(), label) if label else label
    return placeholder


TyperOption.display_type = _value_placeholder(TyperOption.display_type)
TyperOption.display_type_rich = _value_placeholder(TyperOption.display_type_rich)


def run_guarded(invoke) -> int:
    """Run the command; map every outcome to a documented exit status."""
    try:
        rv = invoke()
        if rv == ExitStatus.INTERRUPTED:  # Typer turns Ctrl-C into Exit(130), click into a return value
            _out().error("interrupted")
        return rv if isinstance(rv, int) else ExitStatus.OK
    except DynoctlError as exc:
        _out().error(exc.message, exc.hint, exc.details)
        _traceback_if_debug()
        return exc.exit_status
    except typer.Exit as exc:
        return exc.exit_code
    except click_exc.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "dynoctl"
        _out().error(exc.format_message().rstrip("."), hint=f"see '{command} --help'")
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
    rich_markup_mode=None,
    cls=DynoGroup,
    name="dynoctl",
    help="Operate a Dyno stack: bring it up and down, migrate its schema, back it up and restore it, rotate its secrets, purge stale data on a schedule.",
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
    if project_dir is not None and not project_dir.is_dir():
        from dynoctl.errors import UsageError

        raise UsageError(f"--project-dir {project_dir} is not a directory",
                         hint="pass an existing directory (make it first, then 'dynoctl up' there)")
    settings = Settings(
        project_dir=(project_dir or find_project_dir()).resolve(),
        runtime=runtime.value,
        json=json_,
        verbosity=verbosity,
        debug=debug,
        color=not no_color,
        lock_wait=wait,
    )
    _current = ctx.obj = AppContext(settings, Output(json_, verbosity, not no_color), _command)
    if verbose or debug:  # logging costs start-up time; unconfigured, it still shows warnings
        import logging

        # -v: each step and its detail; -vv (or --debug): also every program dynoctl
        # runs (argv, never secrets: those travel in the environment) and library logs.
        logging.basicConfig(level=logging.DEBUG if debug or verbose >= 2 else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _register() -> None:
    from dynoctl.commands import backup, env, history, info, migrate, purge, rotate, schedule, stack

    for command in (stack.up, stack.down, stack.status, stack.logs, stack.restart):
        app.command()(command)
    app.add_typer(migrate.app, name="migrate")
    app.add_typer(env.app, name="env")
    app.add_typer(backup.app, name="backup")
    app.command("restore")(backup.restore)
    app.command("rotate-secrets")(rotate.rotate_secrets)
    app.command("purge")(purge.purge)
    app.add_typer(schedule.app, name="schedule")
    app.add_typer(schedule.runner, name="scheduler")
    app.command("history")(history.history)
    app.command("version")(info.version)


_register()


def main() -> None:
    app()
