"""Liveness (/health) and readiness (/ready) probes.

Readiness means: the database answers and its schema is at the head of the migration
scripts this server is deployed with (not a constant in code), so a revision written
with ``dynoctl migrate new`` and applied with ``dynoctl migrate`` leaves the server
ready without a rebuild. The scripts are found in MIGRATIONS_DIR (set by dynoctl on
the local runtime, and by compose.yml, which mounts the project's migrations/), else
next to the installed package (a source checkout, or dynoctl's bundled copy).
"""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from dynoserver import workers

log = logging.getLogger("dynoserver.health")
router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> dict:
    """The process is alive; ``keyset`` is the opaque version of the JWT keys it holds.

    ``workers`` lists what every live worker process of this server has loaded (pid,
    key-set version, database login name) and ``workers_expected`` how many were
    started: secret rotation waits until all of them agree (see dynoserver.workers).
    """
    state = request.app.state
    own = {"pid": os.getpid(), "keyset": state.keys.current.version, "db_login": state.database.login}
    return {"status": "ok", "keyset": own["keyset"], "workers": workers.reports(own),
            "workers_expected": workers.expected_workers()}


@router.get("/ready", responses={503: {"description": "database unreachable or schema not at head"}})
def ready(request: Request) -> JSONResponse:
    """The database answers and its schema is at the head of the deployed migration scripts."""
    try:
        heads = scripts_heads()
    except MigrationScriptsError as exc:
        return JSONResponse({"ready": False, "reason": str(exc)}, status_code=503)
    reason = not_ready_reason(request.app.state.engine, heads)
    if reason is not None:
        return JSONResponse({"ready": False, "reason": reason}, status_code=503)
    return JSONResponse({"ready": True, "revision": ",".join(sorted(heads))})


def not_ready_reason(engine: Engine, heads: set[str]) -> str | None:
    try:
        with engine.connect() as connection:
            revisions = set(connection.scalars(text("SELECT version_num FROM alembic_version")))
    except ProgrammingError:
        return "schema not migrated: no alembic_version table"
    except DBAPIError as exc:
        log.warning("readiness: database unreachable (%s)", type(exc.orig).__name__)
        return "database unreachable"
    if revisions != heads:
        found = ", ".join(sorted(revisions)) or "none"
        return f"schema at revision {found}, expected {', '.join(sorted(heads))}"
    return None


# ----------------------------------------------------------- the scripts' head
class MigrationScriptsError(Exception):
    pass


_cache: dict[Path, tuple[tuple, set[str]]] = {}


def migrations_dir() -> Path | None:
    # MIGRATIONS_DIR may list several directories (os.pathsep): the first holding
    # versions/ wins, so a project's own copy, made later by 'dynoctl migrate new',
    # takes over from the bundled scripts without a restart.
    explicit = os.environ.get("MIGRATIONS_DIR")
    if explicit:
        candidates = [Path(p) for p in explicit.split(os.pathsep) if p]
        return next((c for c in candidates if (c / "versions").is_dir()), candidates[-1] if candidates else None)
    here = Path(__file__).resolve().parent
    for parent in here.parents:
        for candidate in (parent / "migrations", parent / "dynoctl" / "_bundled" / "migrations"):
            if (candidate / "versions").is_dir():
                return candidate
    return None


def scripts_heads(directory: Path | None = None) -> set[str]:
    """The head revision(s) of the scripts in ``directory``/versions: revisions no other
    script names as its down_revision. Read without importing alembic (the image does
    not carry it) by parsing each script's ``revision``/``down_revision`` literals;
    cached until a file in versions/ changes."""
    directory = directory or migrations_dir()
    if directory is None or not (directory / "versions").is_dir():
        raise MigrationScriptsError("migration scripts not found (set MIGRATIONS_DIR)")
    scripts = sorted((directory / "versions").glob("*.py"))
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in scripts)
    cached = _cache.get(directory)
    if cached and cached[0] == stamp:
        return cached[1]
    revisions, parents = set(), set()
    for path in scripts:
        revision, down = _revision_of(path)
        if revision:
            revisions.add(revision)
            parents.update(down)
    heads = revisions - parents
    if not heads:
        raise MigrationScriptsError(f"no migration scripts in {directory / 'versions'}")
    _cache[directory] = (stamp, heads)
    return heads


def _revision_of(path: Path) -> tuple[str | None, set[str]]:
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise MigrationScriptsError(f"cannot read migration script {path.name}: {exc}") from None
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            continue
        if name in ("revision", "down_revision"):
            try:
                found[name] = ast.literal_eval(value)
            except ValueError:
                pass
    down = found.get("down_revision")
    downs = {down} if isinstance(down, str) else set(down or ())
    revision = found.get("revision")
    return (revision if isinstance(revision, str) else None), downs
