"""dynoctl backup [list|verify|prune] and dynoctl restore."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dynoctl.commands import app_context, exclusive, recorded

app = typer.Typer(rich_markup_mode=None, help="Make, list, verify and prune backups (bare 'dynoctl backup' makes one).",
                  no_args_is_help=False, invoke_without_command=True)

OUTPUT_HELP = "Backup directory (default: DYNO_BACKUP_DIR, else .dyno/backups)."
_output = typer.Option(None, "--output", "-o", file_okay=False, help=OUTPUT_HELP)
_identity = typer.Option([], "--identity", "-i", help="age identity file (AGE-SECRET-KEY-...): encrypt to its "
                         "public key, or decrypt with it. Repeatable.")
_passphrase = typer.Option(None, "--passphrase-file", help="File holding the passphrase (or set "
                           "DYNO_BACKUP_PASSPHRASE); never on the command line.")
_metrics = typer.Option(None, "--metrics-file", dir_okay=False,
                        help="Write Prometheus textfile-collector gauges here (atomically).")


def _keys(app_ctx, identity: List[Path], passphrase_file: Optional[Path], recipients=(), recipients_files=()):
    from dynoctl.backupcrypto import load_keys

    return load_keys(list(recipients), list(recipients_files), list(identity), passphrase_file,
                     app_ctx.settings.get("DYNO_BACKUP_PASSPHRASE"))


def _dir(app_ctx, output: Optional[Path]) -> Path:
    from dynoctl.backup import default_dir

    return output or default_dir(app_ctx.settings.layout.state_dir, app_ctx.settings.environ)


@app.callback()
def backup(
    ctx: typer.Context,
    output: Optional[Path] = _output,
    no_assets: bool = typer.Option(False, "--no-assets", help="Leave the uploaded files out."),
    with_secrets: bool = typer.Option(False, "--with-secrets", help="Include the env files and the JWT key file "
                                      "(requires encryption)."),
    recipient: List[str] = typer.Option([], "--recipient", "-r", help="Encrypt to this age public key (age1...); "
                                        "this host then cannot read the backup. Repeatable."),
    recipients_file: List[Path] = typer.Option([], "--recipients-file", help="File of age public keys. Repeatable."),
    identity: List[Path] = _identity,
    passphrase_file: Optional[Path] = _passphrase,
    metrics_file: Optional[Path] = _metrics,
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="zstd compression threads (default: every "
                                          "CPU; while the app is busy the backup keeps to half of them)."),
) -> None:
    """Make a backup: the pm_app dump, the asset files and a manifest, in one archive."""
    if ctx.invoked_subcommand:
        return
    import time

    from dynoctl import backup as core

    app_ctx = app_context(ctx)
    keys = _keys(app_ctx, identity, passphrase_file, recipient, recipients_file)
    options = core.BackupOptions(_dir(app_ctx, output), assets=not no_assets, secrets=with_secrets, keys=keys,
                                 zstd_threads=threads)
    started = time.monotonic()
    try:
        with exclusive(app_ctx), recorded(app_ctx, "backup") as run, \
                app_ctx.out.progress("backing up") as progress:
            result = core.make(app_ctx.runtime, app_ctx.settings.layout, options,
                               project_dir=app_ctx.settings.project_dir, progress=progress)
            run.summary.update(name=result.name, size=result.size, tables=result.tables, rows=result.rows,
                               assets=result.assets, encrypted=result.encrypted)
    except BaseException:
        if metrics_file:
            core.write_metrics(metrics_file, "backup", False, time.monotonic() - started)
        raise
    if metrics_file:
        core.write_metrics(metrics_file, "backup", True, result.duration_s, result.size)
    for path in result.missing_assets:
        app_ctx.out.warn(f"asset file missing, not in the backup: {path}")
    app_ctx.out.result(result, lambda r: "\n".join([
        f"backup     {r.path}", f"size       {r.size / (1 << 20):.1f} MiB ({r.dump_bytes / (1 << 20):.1f} MiB dumped)",
        f"revision   {r.revision or '-'}", f"tables     {r.tables} ({r.rows} rows)",
        f"assets     {r.assets} files, {r.distinct_assets} distinct", f"encrypted  {'yes' if r.encrypted else 'no'}",
        f"duration   {r.duration_s:.1f}s"]))


@app.command("list")
def list_(ctx: typer.Context, output: Optional[Path] = _output) -> None:
    """The backups in the backup directory, oldest first."""
    from dynoctl import backup as core
    from dynoctl.output import table

    app_ctx = app_context(ctx)
    found = core.list_backups(_dir(app_ctx, output), app_ctx.settings.layout.state_dir)
    rows = [{**vars(b), "size": f"{b.size / (1 << 20):.1f} MiB", "encrypted": _yes(b.encrypted),
             "created_at": b.created_at or f"unreadable: {b.error}"} for b in found]
    app_ctx.out.result(found, lambda _: table(rows, ["name", "created_at", "size", "revision", "encrypted",
                                                     "last_verified"]) if rows else "no backups yet")


def _yes(value) -> str | None:
    return None if value is None else ("yes" if value else "no")


@app.command()
def verify(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A backup's name (see 'backup list') or path."),
    restore_test: bool = typer.Option(False, "--restore-test", help="Also restore into a scratch database and "
                                      "compare each table's row count with the manifest."),
    output: Optional[Path] = _output,
    identity: List[Path] = _identity,
    passphrase_file: Optional[Path] = _passphrase,
    metrics_file: Optional[Path] = _metrics,
) -> None:
    """Check a backup: every member's checksum, then the dump's table of contents."""
    import time

    from dynoctl import backup as core

    app_ctx = app_context(ctx)
    keys = _keys(app_ctx, identity, passphrase_file)
    path = core.resolve(name, _dir(app_ctx, output))
    started = time.monotonic()
    try:
        with recorded(app_ctx, "backup-verify") as run, app_ctx.out.progress(f"verifying {path.name}") as progress:
            run.summary["name"] = path.name
            result = core.verify(path, app_ctx.runtime, keys, restore_test=restore_test, progress=progress)
            run.summary.update(toc_entries=result.toc_entries, restore_test=bool(result.restore_test))
    except BaseException:
        if metrics_file:
            core.write_metrics(metrics_file, "verify", False, time.monotonic() - started)
        raise
    if metrics_file:
        core.write_metrics(metrics_file, "verify", True, time.monotonic() - started, path.stat().st_size)
    for note in result.notes:
        app_ctx.out.warn(note)
    app_ctx.out.result(result, lambda r: "\n".join([
        f"{r.name}: ok ({r.members} members checked"
        + (f", {r.toc_entries} table-of-contents entries" if r.toc_entries is not None else "")
        + (f", restore test: {len(r.restore_test)} tables match" if r.restore_test else "") + ")"]))


@app.command()
def prune(
    ctx: typer.Context,
    keep_last: int = typer.Option(7, "--keep-last", min=0, help="Keep the newest N backups."),
    keep_daily: int = typer.Option(7, "--keep-daily", min=0, help="Keep the newest backup of each of N days."),
    keep_weekly: int = typer.Option(4, "--keep-weekly", min=0, help="... of each of N ISO weeks."),
    keep_monthly: int = typer.Option(6, "--keep-monthly", min=0, help="... of each of N months."),
    keep_safety_days: float = typer.Option(
        7, "--keep-safety-days", min=0, help="Drop the databases and asset trees that restores and rollbacks kept "
        "(the safety copies 'restore --rollback' uses) once older than this many days (needs the database)."),
    apply: bool = typer.Option(False, "--apply", help="Delete (default: show the plan only)."),
    output: Optional[Path] = _output,
) -> None:
    """Plan (default) or apply a retention policy. The newest backup and the newest
    verified one are never deleted."""
    from dataclasses import replace

    from dynoctl import backup as core

    app_ctx = app_context(ctx)
    directory = _dir(app_ctx, output)
    with recorded(app_ctx, "backup-prune") as run:
        plan = core.plan_prune(core.list_backups(directory, app_ctx.settings.layout.state_dir),
                               keep_last, keep_daily, keep_weekly, keep_monthly)
        plan = replace(plan, **_expired_safety_copies(app_ctx, keep_safety_days))
        if apply:
            with exclusive(app_ctx):
                plan = _apply_prune(app_ctx, core.apply_prune(plan, directory))
        run.summary.update(kept=len(plan.keep), deleted=len(plan.delete) if apply else 0,
                           safety_copies_dropped=len(plan.safety_copies) if apply else 0, applied=apply)
    app_ctx.out.result(plan, _render_prune)


def _expired_safety_copies(app_ctx, keep_days: float) -> dict:
    from dynoctl import restore as core
    from dynoctl.errors import DynoctlError

    project_dir = app_ctx.settings.project_dir
    try:
        return {"safety_copies": core.expired_kept_copies(app_ctx.runtime, project_dir, keep_days)}
    except DynoctlError as exc:  # the database is not running: backups are still pruned
        return {"safety_copies_note": f"safety copies not checked: {exc.message}"}


def _apply_prune(app_ctx, plan):
    from dynoctl import restore as core

    for copy in plan.safety_copies:
        core.drop_kept_copy(app_ctx.runtime, app_ctx.settings.project_dir, copy)
    return plan


def _render_prune(plan) -> str:
    verb = "deleted" if plan.applied else "would delete"
    return "\n".join(
        [f"keep          {k['name']}  ({', '.join(k['reasons'])})" for k in plan.keep]
        + [f"{verb:<13} {d['name']}" for d in plan.delete]
        + [f"{'dropped' if plan.applied else 'would drop':<13} {c.kind} {c.name} (kept by a restore or rollback on "
           f"{c.created_at:%Y-%m-%d %H:%M})" for c in plan.safety_copies]
        + ([plan.safety_copies_note] if plan.safety_copies_note else [])
        + ([] if plan.applied or not (plan.delete or plan.safety_copies) else ["(plan only: pass --apply to delete)"]))


def restore(
    ctx: typer.Context,
    source: Optional[str] = typer.Argument(None, help="A backup's name or path; also a custom-format pg_dump file "
                                           "or a plain SQL dump."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(False, "--force", help="Restore even a schema revision this dynoctl does not know."),
    rollback: bool = typer.Option(False, "--rollback", help="Swap the safety copy the last restore kept back in."),
    with_secrets: bool = typer.Option(False, "--with-secrets", help="Also put the archive's JWT key file in place "
                                      "(the current one kept beside it); its env files are written as "
                                      "NAME.from-backup for review, never applied."),
    output: Optional[Path] = _output,
    identity: List[Path] = _identity,
    passphrase_file: Optional[Path] = _passphrase,
    timeout: float = typer.Option(120, "--timeout", min=1, help="Seconds to wait for the server to be ready."),
) -> None:
    """Restore a backup into a new database, swap it in, migrate, wait for /ready.

    The current database is kept as a safety copy ('restore --rollback' swaps it back)."""
    from dynoctl import backup as core
    from dynoctl import restore as core_restore
    from dynoctl.commands.confirm import confirm_or_refuse
    from dynoctl.errors import UsageError

    app_ctx = app_context(ctx)
    settings = app_ctx.settings
    if rollback:
        return _rollback(app_ctx, yes, timeout)
    if with_secrets and not source:
        raise UsageError("--with-secrets needs a backup", hint="dynoctl restore NAME --with-secrets")
    if not source:
        raise UsageError("which backup?", hint="dynoctl restore NAME|PATH (see 'dynoctl backup list')")
    keys = _keys(app_ctx, identity, passphrase_file)
    path = core.resolve(source, _dir(app_ctx, output))
    with exclusive(app_ctx), recorded(app_ctx, "restore") as run:
        run.summary["name"] = path.name
        with app_ctx.out.progress(f"checking {path.name}") as progress:
            plan = core_restore.plan(app_ctx.runtime, settings.layout, path, keys, force=force, progress=progress)
        app_ctx.out.info(_render_plan(plan))
        confirm_or_refuse(app_ctx, f"replace the {plan.database} database with {path.name}?", yes)
        with app_ctx.out.progress("restoring") as progress:
            result = core_restore.apply(app_ctx.runtime, settings.layout, plan, keys, project_dir=settings.project_dir,
                                        force=force, timeout=timeout, with_secrets=with_secrets,
                                        progress=progress)
        run.summary.update(safety_copy=result.safety_copy, revision=result.migrated_to)
    app_ctx.out.result(result, lambda r: "\n".join([
        f"restored     {r.source} into {r.database}", f"safety copy  {r.safety_copy} ('dynoctl restore --rollback')",
        f"schema       {r.revision_restored or '-'} -> {r.migrated_to or '-'}", f"assets       {r.assets_restored}",
        f"server       {'ready' if r.server_ready else 'not running'}", f"duration     {r.duration_s:.1f}s",
        *([f"key file     {r.secrets.key_file or 'not in the backup'}"
           + (f" (previous kept as {r.secrets.kept_copy})" if r.secrets.kept_copy else ""),
           *[f"review       {p}" for p in r.secrets.env_files_for_review]] if r.secrets else [])]))


def _render_plan(plan) -> str:
    lines = [f"restore plan: {plan.source}",
             f"  kind          {plan.kind}" + (", encrypted" if plan.encrypted else ""),
             f"  made at       {plan.created_at or 'unknown'}",
             f"  schema        {plan.revision or 'unknown until restored'} (this dynoctl's head: {plan.head})",
             f"  tables        {len(plan.tables)} ({sum(plan.tables.values())} rows)" if plan.tables else "",
             f"  assets        {plan.assets} files" if plan.assets else "",
             f"  replaces      {plan.database}; the current one is kept as {plan.will_keep_as}",
             f"  server        {'held out of service for the swap, then /ready awaited' if plan.server_running else 'not running'}"]
    lines += [f"  warning       {w}" for w in plan.warnings]
    return "\n".join(line for line in lines if line)


def _rollback(app_ctx, yes: bool, timeout: float) -> None:
    from dynoctl import restore as core_restore
    from dynoctl.commands.confirm import confirm_or_refuse

    settings = app_ctx.settings
    with exclusive(app_ctx), recorded(app_ctx, "restore") as run:
        plan = core_restore.plan_rollback(app_ctx.runtime, settings.project_dir)
        run.summary.update(rollback_to=plan.safety_copy)
        app_ctx.out.info(f"rollback plan: {plan.safety_copy} becomes pm_app again; the current pm_app is kept as "
                         f"{plan.current_kept_as}" + ("; the assets are swapped back too" if plan.assets else ""))
        confirm_or_refuse(app_ctx, "roll back to the safety copy?", yes)
        result = core_restore.rollback(app_ctx.runtime, settings.layout, settings.project_dir, plan, timeout)
    app_ctx.out.result(result, lambda r: f"rolled back to {r.safety_copy}; the replaced database is {r.current_kept_as}")
