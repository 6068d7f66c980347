"""dynoctl env: create, check and show the stack's env files."""

from __future__ import annotations

import typer

from dynoctl.commands import app_context, exclusive, require_project
from dynoctl.errors import ConfigError
from dynoctl.output import table

app = typer.Typer(rich_markup_mode=None, help="Create, check and show the stack's env files (stack/env/).", no_args_is_help=True)


@app.command("init")
def init(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Replace existing files, keeping a timestamped copy of each."),
) -> None:
    """Create each env file from its template, with fresh random secrets.

    Existing files are kept unless --force. Files are written atomically with mode
    0600. Secret values are never printed."""
    from contextlib import nullcontext

    from dynoctl import envfiles

    app_ctx = app_context(ctx)
    # Replacing files changes the stack's configuration: hold the lock like up/down.
    with exclusive(app_ctx) if force else nullcontext():
        results = envfiles.init_env_files(app_ctx.settings.layout, force=force)
    app_ctx.settings.layout.state_dir.mkdir(mode=0o711, exist_ok=True)  # marks the project
    if any(r.action == "replaced" for r in results) and _server_running(app_ctx):
        app_ctx.out.warn("the running server keeps its old settings and secrets until restarted: "
                         "run 'dynoctl restart server'")
    app_ctx.out.result(results, lambda rs: table(
        [{"file": str(r.file), "action": r.action, "backup": r.backup,
          "secrets": ", ".join(r.secrets_generated) or None} for r in rs],
        ["file", "action", "backup", "secrets"], headers=["file", "action", "previous copy", "secrets generated"]))


@app.command("check")
def check(ctx: typer.Context) -> None:
    """Validate every env file against its template; exit 3 if any error is found.

    Reports all problems at once: missing and unknown keys, placeholder or weak
    secrets, equal access/refresh secrets, malformed DATABASE_URL, FRONTEND_URL,
    STATUS or PORT, files readable by others, lines python-dotenv cannot parse."""
    from dynoctl import envfiles

    app_ctx = app_context(ctx)
    require_project(app_ctx)
    _warn_ignored(app_ctx)
    report = envfiles.check_env_files(app_ctx.settings.layout)
    from dynoctl.rotation import age_report  # secret ages: rotation's records (see rotate-secrets)

    ages, stale = age_report(app_ctx.settings.layout, app_ctx.settings.environ)
    app_ctx.out.result({"ok": report.ok, "files": report.files, "problems": report.problems, "secret_ages": ages},
                       lambda _: _problems_table(report))
    for file in dict.fromkeys(a.file for a in ages):
        app_ctx.out.info(f"secret ages in {file}: " + ", ".join(
            f"{a.name} {a.age_days:g}d" for a in ages if a.file == file))
    for warning in stale:
        app_ctx.out.warn(warning)
    if not report.ok:
        errors = sum(p.severity == "error" for p in report.problems)
        raise ConfigError(f"env check found {errors} error(s)", hint="fix them, or run 'dynoctl env init' for missing files")


def _server_running(app_ctx) -> bool:
    from dynoctl.errors import DynoctlError

    try:
        return any(s.service == "server" and s.state == "running" for s in app_ctx.runtime.status())
    except DynoctlError:
        return False


def _problems_table(report):
    if not report.problems:
        return f"ok: {len(report.files)} env files checked, no problems"
    return table([vars(p) for p in report.problems], ["severity", "file", "line", "key", "message"])


@app.command("show")
def show(ctx: typer.Context) -> None:
    """The effective configuration, secrets redacted, with where each value comes from
    (file, environment, or the template's default)."""
    from dynoctl import envfiles

    app_ctx = app_context(ctx)
    require_project(app_ctx)
    _warn_ignored(app_ctx)
    values = envfiles.show_config(app_ctx.settings.layout, app_ctx.settings.environ)
    app_ctx.out.result(values, lambda vs: table([vars(v) for v in vs], ["file", "key", "value", "source"]))


def _warn_ignored(app_ctx) -> None:
    from dynoctl import envfiles

    ignored = envfiles.ignored_environment(app_ctx.settings.layout, app_ctx.settings.environ)
    if ignored:
        app_ctx.out.warn(f"{', '.join(ignored)} set in the environment: ignored, the env files alone configure "
                         "the stack (edit them, then 'dynoctl restart')")
