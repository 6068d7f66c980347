"""Users see only their own projects: anything else is reported as not found."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from dynoserver.errors import ApiError, not_found
from dynoserver.models import Project


def owned_project(db: Session, user_id: uuid.UUID, project_id: uuid.UUID, *, lock: bool = False) -> Project:
    """The caller's project; ``lock`` holds it (FOR SHARE) against a concurrent delete."""
    query = select(Project).where(Project.id == project_id, Project.owner_id == user_id)
    if lock:
        query = query.with_for_update(read=True)
    project = db.scalar(query)
    if project is None:
        raise not_found("project")
    return project


def writable_project(db: Session, user_id: uuid.UUID, project_id: uuid.UUID, *, lock: bool = False) -> Project:
    """The caller's project, refused while archived: archived projects are read-only."""
    project = owned_project(db, user_id, project_id, lock=lock)
    if project.archived_at is not None:
        raise ApiError(409, "project_archived", "the project is archived; unarchive it to change it")
    return project
