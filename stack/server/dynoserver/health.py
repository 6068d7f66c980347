"""Liveness (/health) and readiness (/ready) probes."""

from __future__ import annotations

import logging
import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from dynoserver import workers
from dynoserver.models import SCHEMA_HEAD_REVISION

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
    """The database answers and its schema is at the revision this server was built for."""
    reason = not_ready_reason(request.app.state.engine)
    if reason is not None:
        return JSONResponse({"ready": False, "reason": reason}, status_code=503)
    return JSONResponse({"ready": True, "revision": SCHEMA_HEAD_REVISION})


def not_ready_reason(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            revisions = set(connection.scalars(text("SELECT version_num FROM alembic_version")))
    except ProgrammingError:
        return "schema not migrated: no alembic_version table"
    except DBAPIError as exc:
        log.warning("readiness: database unreachable (%s)", type(exc.orig).__name__)
        return "database unreachable"
    if revisions != {SCHEMA_HEAD_REVISION}:
        found = ", ".join(sorted(revisions)) or "none"
        return f"schema at revision {found}, expected {SCHEMA_HEAD_REVISION}"
    return None
