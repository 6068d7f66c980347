"""dynoctl purge [sessions|assets|projects|quarantine|all]."""

from __future__ import annotations

import re
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from enum import Enum
from typing import Optional

import typer

from dynoctl.commands import app_context, recorded
from dynoctl.errors import Busy, DynoctlError, PartlyFailed, UsageError

Kind = Enum("Kind", {k: k for k in ("sessions", "assets", "projects", "quarantine", "all")}, type=str)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """'90d', '24h', '30m', '2w', '45s' (also combined: '1d12h')."""
    parts = re.findall(r"(\d+)([smhdw])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise UsageError(f"not a duration: {text!r}", hint="use e.g. 7d, 24h, 90m, 2w")
    return sum((timedelta(**{_UNITS[u]: int(n)}) for n, u in parts), timedelta())


def purge(
    ctx: typer.Context,
    kind: Kind = typer.Argument(Kind.all, help="What to purge: sessions, assets, projects, quarantine, or all "
                                               "(sessions, projects, assets)."),
    apply: bool = typer.Option(False, "--apply", help="Delete. Without it, only the plan is shown."),
    older_than: Optional[str] = typer.Option(None, "--older-than", metavar="AGE",
                                             help="sessions: expired/revoked longer ago than this (default 7d); "
                                                  "projects: archived longer ago (default 90d)."),
    grace: str = typer.Option("24h", "--grace", metavar="AGE",
                              help="assets: leave row-less files younger than this (at least 1h)."),
    retention: str = typer.Option("7d", "--retention", metavar="AGE",
                                  help="quarantine: keep quarantined files this long."),
    fix: bool = typer.Option(False, "--fix", help="assets: also delete rows whose file is missing."),
    max_delete: Optional[int] = typer.Option(None, "--max-delete", min=0, metavar="N",
                                             help="Refuse (exit 3) when the plan exceeds N deletions."),
    wait: Optional[float] = typer.Option(None, "--wait", min=0, metavar="SECONDS",
                                         help="Queue this long for a running purge of the same kind "
                                              "instead of exiting 75."),
) -> None:
    """Delete stale sessions, orphan asset files, dangling asset rows and long-archived
    projects, in short batches that never hold up the app. Shows the plan unless --apply."""
    from dynoctl import purge as core

    app_ctx = app_context(ctx)
    kinds = list(core.ALL_KINDS) if kind is Kind.all else [kind.value]
    if older_than and kind is Kind.all:
        raise UsageError("--older-than means different things to sessions and projects",
                         hint="purge them one kind at a time: 'dynoctl purge sessions --older-than 14d'")
    options = _options(kind.value, older_than, grace, retention, fix, max_delete,
                       app_ctx.settings.lock_wait if wait is None else wait)
    runtime = app_ctx.runtime
    if set(kinds) & {"assets", "projects"} and (who := core.restore_running(app_ctx.settings.layout.state_dir)):
        raise Busy(f"a restore is running ({who}): asset files must not be swept under it",
                   hint="run the purge after the restore, or pass --wait")
    store = core.store_for(runtime) if set(kinds) & {"assets", "projects", "quarantine"} else None
    with _recorded(app_ctx, kinds) as runs, _progress_bar(app_ctx) as progress:
        report = core.run(runtime.database_url(), store, kinds, options, apply, progress)
        for run, kind_report in zip(runs, report.kinds):
            run.summary = _summary(kind_report)
        app_ctx.out.result(report, _render)
        if report.status == "partial":
            raise PartlyFailed("some purge kinds failed", details=[e for k in report.kinds for e in k.errors])
        if report.status == "failed":
            raise DynoctlError("the purge failed", details=[e for k in report.kinds for e in k.errors])


def _options(kind, older_than, grace, retention, fix, max_delete, wait):
    from dynoctl.purge import PurgeOptions

    options = PurgeOptions(grace=parse_duration(grace), retention=parse_duration(retention), fix=fix,
                           max_delete=max_delete, wait=wait)
    if older_than:
        age = parse_duration(older_than)
        options.older_than = options.project_older_than = age
    return options


@contextmanager
def _recorded(app_ctx, kinds):
    """One history entry per kind (jobs purge-sessions, purge-assets ...)."""
    with ExitStack() as stack:
        yield [stack.enter_context(recorded(app_ctx, f"purge-{k}"))
               for k in kinds]


@contextmanager
def _progress_bar(app_ctx):
    """A bar on a terminal (long runs); nothing otherwise."""
    out = app_ctx.out
    if out.verbosity < 0 or out.json_mode or not out.stderr.is_terminal:
        yield lambda kind, done, total: None
        return
    from rich.progress import Progress

    with Progress(console=out.stderr, transient=True) as bar:
        tasks = {}

        def update(kind, done, total):
            if kind not in tasks:
                tasks[kind] = bar.add_task(f"purge {kind}", total=total or None)
            bar.update(tasks[kind], completed=done)

        yield update


def _summary(k) -> dict:
    return {"applied": k.applied, "candidates": k.candidates, "deleted": k.deleted, "quarantined": k.quarantined,
            "bytes_freed": k.bytes_freed, "batches": k.batches, "skipped": sum(k.skipped.values())}


def _render(report):
    from rich.console import Group

    from dynoctl.output import table

    rows = [{"kind": k.kind, "cutoff": k.cutoff.isoformat(timespec="seconds") if k.cutoff else None,
             "candidates": k.candidates, "deleted": k.deleted if k.applied else None,
             "quarantined": k.quarantined if k.applied else None, "freed": _size(k.bytes_freed) if k.applied else None,
             "skipped": ", ".join(f"{r}: {n}" for r, n in k.skipped.items()) or None,
             "batches": k.batches, "duration": f"{k.duration_s:.1f}s",
             "tables": _tables(k) if k.applied else None} for k in report.kinds]
    title = "purge (applied)" if report.applied else "purge plan (nothing deleted; pass --apply)"
    parts = [table(rows, ["kind", "cutoff", "candidates", "deleted", "quarantined", "freed", "skipped", "batches",
                          "duration", "tables"], title=title)]
    for k in report.kinds:
        for reason, paths in k.samples.items():
            parts.append(f"{k.kind}: {reason}: " + ", ".join(paths))
    return Group(*parts)


def _tables(k) -> str:
    return ", ".join(f"{t} {_size(b)}->{_size(k.table_bytes_after.get(t, 0))}" for t, b in k.table_bytes_before.items())


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
