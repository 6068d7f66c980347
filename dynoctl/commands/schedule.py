"""dynoctl schedule show|install|uninstall, and dynoctl scheduler run."""

from __future__ import annotations

import typer

from dynoctl.commands import app_context
from dynoctl.errors import UsageError

app = typer.Typer(rich_markup_mode=None, help="Run the maintenance jobs (purge, backup, backup prune, rotate-secrets --prune) on a "
                       "schedule: crontab lines, systemd timers, or 'dynoctl scheduler run'.",
                  no_args_is_help=True)
runner = typer.Typer(rich_markup_mode=None, help="The in-process scheduler, for hosts and containers without cron.", no_args_is_help=True)


def _where(ctx: typer.Context):
    app_ctx = app_context(ctx)
    return app_ctx, app_ctx.settings.project_dir, app_ctx.settings.layout.state_dir


@app.command("show")
def show(ctx: typer.Context) -> None:
    """Print the job table as crontab lines and as systemd service+timer units
    (change it in .dyno/schedule.toml)."""
    from dynoctl import scheduler

    app_ctx, project_dir, state_dir = _where(ctx)
    jobs = scheduler.load_jobs(state_dir)
    result = {"jobs": jobs, "crontab": scheduler.cron_lines(jobs, project_dir, state_dir),
              "systemd": scheduler.systemd_units(jobs, project_dir, state_dir),
              "config": str(state_dir / scheduler.SCHEDULE_FILENAME)}
    app_ctx.out.result(result, _render_show)


def _render_show(result) -> str:
    parts = ["# crontab (install with 'dynoctl schedule install --cron'):", *result["crontab"], ""]
    for name, text in result["systemd"].items():
        parts += [f"# systemd: {name}", text]
    parts.append(f"# the job table: defaults, overridden by {result['config']}")
    return "\n".join(parts)


@app.command("install")
def install(ctx: typer.Context,
            cron: bool = typer.Option(False, "--cron", help="Add the jobs to your crontab, in a marked block "
                                                            "(replaced on every install)."),
            systemd: bool = typer.Option(False, "--systemd", help="Write and enable systemd timers.")) -> None:
    """Install the schedule: --cron (idempotent) or --systemd."""
    from dynoctl import scheduler

    if cron == systemd:
        raise UsageError("choose one of --cron or --systemd")
    app_ctx, project_dir, state_dir = _where(ctx)
    jobs = scheduler.load_jobs(state_dir)
    if cron:
        change = scheduler.install_cron(jobs, project_dir, state_dir)
        app_ctx.out.info("crontab updated" if change.changed else "crontab already up to date")
        app_ctx.out.result(change, lambda c: "\n".join(c.lines))
    else:
        units = scheduler.install_systemd(jobs, project_dir, state_dir)
        app_ctx.out.result({"units": units}, lambda r: "\n".join(r["units"]))


@app.command("uninstall")
def uninstall(ctx: typer.Context,
              cron: bool = typer.Option(False, "--cron", help="Only the crontab block."),
              systemd: bool = typer.Option(False, "--systemd", help="Only the systemd units.")) -> None:
    """Remove exactly what install added: this project's crontab block and/or its units."""
    from dynoctl import scheduler

    app_ctx, project_dir, _ = _where(ctx)
    both = not (cron or systemd)
    removed = {}
    if cron or both:
        try:
            removed["crontab_block"] = scheduler.uninstall_cron(project_dir).changed
        except Exception:
            if cron:
                raise
            removed["crontab_block"] = False  # no cron on this host: nothing of ours there
    if systemd or both:
        removed["systemd_units"] = scheduler.uninstall_systemd(project_dir)
    app_ctx.out.result(removed, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()))


@runner.command("run")
def run(ctx: typer.Context,
        now: bool = typer.Option(False, "--now", help="Also run every job once at start.")) -> None:
    """Run the job table in this process until SIGTERM: one JSON line per job run on
    stdout; a failing job is logged and the scheduler carries on."""
    from dynoctl import scheduler

    app_ctx, project_dir, state_dir = _where(ctx)
    jobs = scheduler.load_jobs(state_dir)
    app_ctx.out.info(f"scheduler: {len(jobs)} jobs: " + ", ".join(f"{j.name} ({j.when})" for j in jobs))
    sched = scheduler.InProcessScheduler(jobs, project_dir, lambda r: app_ctx.out.line(scheduler.log_line(r)),
                                         run_now=now)
    sched.run_forever()
    app_ctx.out.info("scheduler: stopped")
