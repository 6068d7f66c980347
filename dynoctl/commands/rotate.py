"""dynoctl rotate-secrets: new JWT keys and database passwords without logging anyone out."""

from __future__ import annotations

import typer

from dynoctl.commands import app_context, exclusive, recorded
from dynoctl.output import table


def rotate_secrets(
    ctx: typer.Context,
    access: bool = typer.Option(False, "--access", help="Rotate the access-token key."),
    refresh: bool = typer.Option(False, "--refresh", help="Rotate the refresh-token key."),
    db_password: bool = typer.Option(False, "--db-password", help="Move the server to its other database login "
                                     "with a new password, then disable the old one."),
    db_superuser: bool = typer.Option(False, "--db-superuser", help="New password for the database superuser "
                                      "(dynoctl's own connections)."),
    prune: bool = typer.Option(False, "--prune", help="Only remove keys past their grace."),
    revoke_all: bool = typer.Option(False, "--revoke-all", help="Emergency: replace every key at once, reject "
                                    "every outstanding token and revoke every session."),
    grace_margin: int = typer.Option(300, "--grace-margin", min=0, metavar="SECONDS",
                                     help="Added to the token TTL before an old key is pruned."),
    timeout: float = typer.Option(30, "--timeout", min=1, metavar="SECONDS",
                                  help="How long every server worker has to confirm a reload."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (values redacted) and stop."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking."),
) -> None:
    """Rotate the JWT keys (both by default) and/or the database passwords with no logout.

    New keys are added verify-only, every server worker must confirm them, then they
    sign; old keys keep verifying for the token TTL plus --grace-margin. Every run
    also prunes keys past their grace. Exit 4 when the server does not confirm in
    time (nothing promoted), 75 when another run holds the project lock."""
    from dynoctl import rotation
    from dynoctl.commands.confirm import confirm_or_refuse
    from dynoctl.errors import UsageError

    app_ctx = app_context(ctx)
    if revoke_all and (access or refresh or prune):
        raise UsageError("--revoke-all replaces every key: it takes no --access/--refresh/--prune")
    jwt = (access or refresh or not (db_password or db_superuser or prune or revoke_all))
    purposes = tuple(p for p, chosen in (("access", access), ("refresh", refresh)) if chosen) or (
        rotation.PURPOSES if jwt and not prune else ())
    options = rotation.RotationOptions(purposes, db_password, db_superuser, prune, revoke_all, grace_margin, timeout)
    settings, out = app_ctx.settings, app_ctx.out
    with exclusive(app_ctx):
        plan = rotation.make_plan(app_ctx.runtime, settings.layout, options)
        if dry_run:
            out.result(plan, lambda p: "\n".join(f"- {step}" for step in p.steps))
            return
        for step in plan.steps:
            out.info(f"plan: {step}")
        question = ("REVOKE EVERY SESSION: every user is logged out and every token rejected. Go ahead?"
                    if revoke_all else "Rotate these secrets?")
        confirm_or_refuse(app_ctx, question, yes)
        with recorded(app_ctx, "rotate-secrets") as run:
            result = rotation.apply(plan, app_ctx.runtime, settings.layout, options, progress=out.info)
            run.summary = {"rotated": list(result.new_kids), "pruned": len(result.pruned),
                           "db_login": result.db_login, "reloaded": result.reloaded,
                           "wall_seconds": result.wall_seconds}
    if result.note:
        out.warn(result.note)
    out.result(result, lambda r: table([{"step": s} for s in r.steps] or [{"step": "nothing to do"}], ["step"]))
