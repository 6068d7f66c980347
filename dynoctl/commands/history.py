"""dynoctl history."""

from __future__ import annotations

from typing import Optional

import typer

from dynoctl.commands import app_context


def history(
    ctx: typer.Context,
    job: Optional[str] = typer.Argument(None, help="Only this job (e.g. backup, restore, purge)."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many of the last runs to show."),
) -> None:
    """The last runs of maintenance jobs (backup, restore, rotation, purge) and the last
    success of each job."""
    from dynoctl import history as runs

    app_ctx = app_context(ctx)
    state_dir = app_ctx.settings.layout.state_dir
    result = {"runs": runs.read(state_dir, job=job, limit=limit),
              "last_success": {name: run for name, run in runs.last_success(state_dir).items()
                               if job is None or name == job or name.startswith(job + "-")}}
    app_ctx.out.result(result, _render)


def _render(result):
    from rich.console import Group

    from dynoctl.output import table

    rows = [{**vars(r), "duration": f"{r.duration_s:.1f}s" if r.duration_s is not None else None,
             "what": _brief(r)} for r in reversed(result["runs"])]
    last = [{"job": job, "finished_at": r.finished_at, "duration": f"{r.duration_s:.1f}s"}
            for job, r in sorted(result["last_success"].items())]
    if not rows:
        return "no runs recorded yet"
    return Group(table(rows, ["started_at", "job", "status", "duration", "what"], title="last runs"),
                 table(last, ["job", "finished_at", "duration"], title="last success per job"))


def _brief(run) -> str | None:
    if run.error:
        return run.error
    return ", ".join(f"{k}={v}" for k, v in run.summary.items() if isinstance(v, (int, float, str)))[:80] or None
