"""dynoctl migrate: the schema, through alembic, on the runtime's database."""

from __future__ import annotations


import typer

from dynoctl.commands import app_context, exclusive, require_project
from dynoctl.commands.confirm import confirm_or_refuse
from dynoctl.output import table

app = typer.Typer(rich_markup_mode=None, help="Apply, revert and inspect schema migrations (bare 'migrate' = 'migrate up').",
                  invoke_without_command=True)


@app.callback()
def migrate(ctx: typer.Context) -> None:
    """Apply, revert and inspect schema migrations. Without a subcommand: upgrade to head."""
    require_project(app_context(ctx))
    if ctx.invoked_subcommand is None:
        up(ctx, "head")


@app.command("up")
def up(ctx: typer.Context, revision: str = typer.Argument("head", help="Target revision (id, prefix or 'head').")) -> None:
    """Apply pending migrations up to REVISION (default: head), then make sure the API
    server's own database role exists with what it needs (moving a server that still
    logs in as the superuser onto it)."""
    from dynoctl import migrations, stack

    app_ctx = app_context(ctx)
    with exclusive(app_ctx), app_ctx.out.progress("applying migrations"):
        url = app_ctx.runtime.database_url()
        result = migrations.upgrade(url, app_ctx.settings.layout.migrations_dir, revision)
        # The server's role, with privileges on what the migrations just created.
        messages = stack.ensure_server_login(app_ctx.runtime)
    for message in messages:
        app_ctx.out.warn(message)
    app_ctx.out.result(result, _render_result)


@app.command("down")
def down(
    ctx: typer.Context,
    revision: str = typer.Argument(..., help="Revision to go back to (id, prefix or 'base' for an empty schema)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be reverted and stop."),
) -> None:
    """Revert migrations down to REVISION. Shows the plan and asks first: reverting
    can drop tables and the data in them."""
    from dynoctl import migrations

    from dataclasses import asdict

    app_ctx = app_context(ctx)
    url, migrations_dir = app_ctx.runtime.database_url(), app_ctx.settings.layout.migrations_dir
    if dry_run:
        plan = migrations.plan_downgrade(url, migrations_dir, revision)
        app_ctx.out.result({**asdict(plan), "dry_run": True}, _render_plan)
        return
    with exclusive(app_ctx):
        plan = migrations.plan_downgrade(url, migrations_dir, revision)
        if not plan.revisions:
            app_ctx.out.result({**asdict(plan), "dry_run": False}, _render_result)
            return
        app_ctx.out.info("this will revert:\n" + "\n".join(f"  {r.revision}  {r.message}" for r in plan.revisions))
        confirm_or_refuse(app_ctx, f"revert {len(plan.revisions)} migration(s)?", yes)
        result = migrations.downgrade(url, migrations_dir, revision)
    app_ctx.out.result({**asdict(result), "dry_run": False}, _render_result)


@app.command("status")
def status(ctx: typer.Context) -> None:
    """The database's revision, the code's head, and what is pending."""
    from dynoctl import migrations

    app_ctx = app_context(ctx)
    result = migrations.status(app_ctx.runtime.database_url(), app_ctx.settings.layout.migrations_dir)
    app_ctx.out.result(result, lambda s: "\n".join([
        f"current   {s.current or '(empty schema)'}", f"head      {s.head}",
        f"pending   {', '.join(r.revision for r in s.pending) or 'none'}"]))


@app.command("history")
def history(ctx: typer.Context) -> None:
    """Every revision the code ships, oldest first."""
    from dynoctl import migrations

    app_ctx = app_context(ctx)
    revisions = migrations.history(app_ctx.settings.layout.migrations_dir)
    app_ctx.out.result(revisions, lambda rs: table([vars(r) for r in rs], ["revision", "down_revision", "message"]))


@app.command("new")
def new(
    ctx: typer.Context,
    message: str = typer.Option(..., "--message", "-m", help="What the migration does."),
    autogenerate: bool = typer.Option(False, "--autogenerate", help="Diff the models against the running database."),
) -> None:
    """Write a new revision script in the project's migrations/versions (a project
    using the bundled stack first gets its own copy of the migrations)."""
    from dynoctl import migrations

    app_ctx = app_context(ctx)
    settings = app_ctx.settings
    with exclusive(app_ctx):
        directory = migrations.project_copy(settings.layout.migrations_dir, settings.project_dir)
        if directory != settings.layout.migrations_dir:
            app_ctx.out.info(f"copied the bundled migrations to {directory}: the project's own from now on")
        url = app_ctx.runtime.database_url() if autogenerate else None
        path = migrations.new_revision(directory, message, autogenerate, url)
    app_ctx.out.result({"path": path}, lambda r: f"created {r['path']}")


def _render_result(result) -> str:
    from dynoctl.output import to_jsonable

    r = to_jsonable(result)  # a MigrationResult, or its dict with dry_run
    verb = {"upgrade": "applied", "downgrade": "reverted"}[r["direction"]]
    if not r["revisions"]:
        return f"nothing to do: at {r['before'] or '(empty schema)'}"
    listed = "\n".join(f"  {x['revision']}  {x['message']}" for x in r["revisions"])
    return f"{verb} {len(r['revisions'])} migration(s), now at {r['after'] or '(empty schema)'}:\n{listed}"


def _render_plan(plan: dict) -> str:
    if not plan["revisions"]:
        return f"plan (dry run): nothing to revert, at {plan['before'] or '(empty schema)'}"
    listed = "\n".join(f"  {x['revision']}  {x['message']}" for x in plan["revisions"])
    return (f"plan (dry run): would revert {len(plan['revisions'])} migration(s) to "
            f"{plan['after'] or '(empty schema)'}; nothing was changed:\n{listed}")
