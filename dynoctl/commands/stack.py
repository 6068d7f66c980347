"""dynoctl up / down / status / logs / restart."""

from __future__ import annotations

from typing import Optional

import typer

from dynoctl.commands import app_context, exclusive, require_project
from dynoctl.commands.confirm import confirm_or_refuse
from dynoctl.errors import UsageError
from dynoctl.output import table
from dynoctl.runtime import SERVICES, check_service


def up(
    ctx: typer.Context,
    build: bool = typer.Option(False, "--build", help="Rebuild images first (docker runtime)."),
    no_migrate: bool = typer.Option(False, "--no-migrate", help="Do not apply pending migrations."),
    timeout: float = typer.Option(120, "--timeout", min=1, metavar="SECONDS",
                                  help="Seconds to wait for everything to be ready."),
) -> None:
    """Start the stack: database, migrations, API server; wait until /ready answers.

    Starts only what is not running, so running it again changes nothing. Missing env
    files are first created from their templates with fresh secrets (as 'env init')."""
    from dataclasses import replace

    from dynoctl import envfiles, stack

    app_ctx = app_context(ctx)
    with exclusive(app_ctx):
        created = [str(r.file) for r in envfiles.init_env_files(app_ctx.settings.layout) if r.action == "created"]
        for path in created:
            app_ctx.out.info(f"created {path} from its template, with fresh secrets")
        with app_ctx.out.progress(f"bringing the stack up ({app_ctx.runtime.name} runtime)") as progress:
            result = stack.up(app_ctx.runtime, app_ctx.settings.layout.migrations_dir, build=build,
                              migrate=not no_migrate, timeout=timeout, progress=progress)
    result = replace(result, env_files_created=created)
    for warning in result.warnings:
        app_ctx.out.warn(warning)
    app_ctx.out.result(result, _render_up)


def _render_up(result) -> str:
    applied = result.migrations.revisions if result.migrations else []
    if result.pending:
        migrations = f"{len(result.pending)} pending, not applied (--no-migrate): " + \
            ", ".join(r.revision for r in result.pending)
    else:
        migrations = ", ".join(r.revision for r in applied) or "none pending"
    lines = [f"runtime      {result.runtime}",
             f"started      {', '.join(result.started) or 'nothing (already running)'}",
             f"migrations   {migrations}"]
    lines += [f"{name:<12} {url}" for name, url in result.urls.items()]
    return "\n".join(lines)


def down(
    ctx: typer.Context,
    volumes: bool = typer.Option(False, "--volumes", help="Also DESTROY the data: database and uploaded files."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before destroying data."),
    timeout: float = typer.Option(30, "--timeout", min=1, metavar="SECONDS",
                                  help="Seconds to wait for each service to stop."),
) -> None:
    """Stop the stack. With --volumes, plan and confirm, then destroy its data.

    Works whatever state the env file is in (a warning says what is wrong)."""
    from dynoctl import stack

    app_ctx = app_context(ctx)
    require_project(app_ctx)
    runtime = app_ctx.runtime
    with exclusive(app_ctx):
        if volumes:
            plan = stack.plan_down(runtime, remove_data=True)
            app_ctx.out.info("this will permanently delete:\n" + "\n".join(f"  {p}" for p in plan.data_to_remove))
            confirm_or_refuse(app_ctx, "delete the stack's data?", yes)
        result = stack.down(runtime, remove_data=volumes, timeout=timeout)
    _warn_all(app_ctx, result.warnings)
    app_ctx.out.result(result, lambda r: "\n".join([
        f"stopped      {', '.join(r.stopped) or 'nothing (already stopped)'}",
        *([f"removed      {', '.join(r.data_removed)}"] if volumes else [])]))


def status(ctx: typer.Context) -> None:
    """Each service's state, health, address and uptime; the schema against head."""
    from dynoctl import stack

    app_ctx = app_context(ctx)
    require_project(app_ctx)
    result = stack.status(app_ctx.runtime, app_ctx.settings.layout.migrations_dir)
    _warn_all(app_ctx, result.warnings)
    app_ctx.out.result(result, _render_status)
    from dynoctl.rotation import age_report  # warn about secrets older than DYNO_SECRET_MAX_AGE_DAYS

    for warning in age_report(app_ctx.settings.layout, app_ctx.settings.environ)[1]:
        app_ctx.out.warn(warning)


def _warn_all(app_ctx, warnings) -> None:
    for warning in dict.fromkeys(warnings):
        app_ctx.out.warn(warning)


def _render_status(result):
    from datetime import datetime, timezone

    from rich.console import Group

    now = datetime.now(timezone.utc)
    rows = [{**vars(s), "uptime": _age(now - s.started_at) if s.started_at else None} for s in result.services]
    services = table(rows, ["service", "state", "health", "address", "uptime", "detail"],
                     title=f"{result.runtime} runtime")
    if result.schema:
        s = result.schema
        pending = f", {len(s.pending)} pending" if s.pending else ", up to date"
        schema_line = f"schema: {s.current or 'empty'} (head {s.head}{pending})"
    else:
        schema_line = f"schema: unknown ({result.schema_error})"
    return Group(services, schema_line)


def _age(delta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{days}d {hours}h" if days else f"{hours}h {minutes}m" if hours else f"{minutes}m {seconds}s"


def logs(
    ctx: typer.Context,
    service: Optional[str] = typer.Argument(None, help=f"One of {', '.join(SERVICES)} (default: all)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until Ctrl-C."),
    tail: Optional[int] = typer.Option(100, "--tail", "-n", min=0, metavar="LINES",
                                       help="Lines of history to show first (per service)."),
) -> None:
    """Show service logs (NDJSON records with --json). Without a service, the services'
    lines interleaved by time."""
    from dynoctl import stack

    app_ctx = app_context(ctx)
    require_project(app_ctx)
    services = _services(service)
    if follow and len(services) > 1:
        raise UsageError("--follow needs one service", hint="e.g. 'dynoctl logs server -f'")
    if len(services) > 1:
        records = stack.interleaved_logs(app_ctx.runtime, services, tail)
    else:
        records = ({"service": name, "line": line}
                   for name in services for line in app_ctx.runtime.logs(name, tail=tail, follow=follow))
    _warn_all(app_ctx, getattr(app_ctx.runtime, "warnings", []))
    if app_ctx.out.json_mode and not follow:
        app_ctx.out.result(list(records))  # one document
        return
    for record in records:  # streamed: NDJSON with --json
        if app_ctx.out.json_mode:
            app_ctx.out.json_line(record)
        else:
            app_ctx.out.line(record["line"] if len(services) == 1 else f"{record['service']:<7}| {record['line']}")


def restart(
    ctx: typer.Context,
    service: Optional[str] = typer.Argument(None, help=f"One of {', '.join(SERVICES)} (default: all)."),
    timeout: float = typer.Option(120, "--timeout", min=1, metavar="SECONDS", help="Seconds to wait."),
) -> None:
    """Stop and start services (all by default), then wait until the server is ready.

    Everything a start needs (env file, ports, images, compose file) is checked first:
    a refused restart stops nothing."""
    from dynoctl import stack

    app_ctx = app_context(ctx)
    require_project(app_ctx)
    with exclusive(app_ctx), app_ctx.out.progress("restarting"):
        result = stack.restart(app_ctx.runtime, _services(service), timeout=timeout)
    app_ctx.out.result(result, lambda r: f"restarted    {', '.join(r.restarted)}")


def _services(service: str | None) -> list[str]:
    return list(SERVICES) if service is None else [check_service(service)]
