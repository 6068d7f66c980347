"""Projects: CRUD plus archive/unarchive, each user seeing only their own."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dynoserver.auth import current_user_id
from dynoserver.db import get_db
from dynoserver.errors import error_responses, unauthorized
from dynoserver.limits import JsonGuardRoute
from dynoserver.models import Asset, Project
from dynoserver.ownership import owned_project, writable_project
from dynoserver.schemas import ProjectCreate, ProjectOut, ProjectUpdate
from dynoserver.storage import remove_files

router = APIRouter(prefix="/projects", tags=["projects"], route_class=JsonGuardRoute)

MAX_PAGE = 200
MAX_OFFSET = 1_000_000  # keeps OFFSET within what PostgreSQL plans sensibly


@router.get("", response_model=list[ProjectOut])
def list_projects(
    archived: bool = Query(False, description="true: only archived projects; false: only active ones"),
    limit: int = Query(50, ge=1, le=MAX_PAGE),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    user_id: uuid.UUID = Depends(current_user_id),
    db: Session = Depends(get_db),
) -> list[Project]:
    archived_filter = Project.archived_at.is_not(None) if archived else Project.archived_at.is_(None)
    query = (
        select(Project)
        .where(Project.owner_id == user_id, archived_filter)
        .order_by(Project.created_at.desc(), Project.id)
        .limit(limit)
        .offset(offset)
    )
    return list(db.scalars(query))


@router.post("", status_code=201, response_model=ProjectOut)
def create_project(
    body: ProjectCreate, user_id: uuid.UUID = Depends(current_user_id), db: Session = Depends(get_db)
) -> Project:
    project = Project(owner_id=user_id, name=body.name, description=body.description)
    db.add(project)
    try:
        db.commit()
    except IntegrityError:
        # The only constraint a validated body can break is the owner foreign key: the
        # user was deleted between current_user_id's session check and this insert.
        raise unauthorized("the account no longer exists") from None
    return project


@router.get("/{project_id}", response_model=ProjectOut)
def get_project(
    project_id: uuid.UUID, user_id: uuid.UUID = Depends(current_user_id), db: Session = Depends(get_db)
) -> Project:
    return owned_project(db, user_id, project_id)


@router.patch("/{project_id}", response_model=ProjectOut, responses=error_responses(409))
def update_project(
    project_id: uuid.UUID,
    body: ProjectUpdate,
    user_id: uuid.UUID = Depends(current_user_id),
    db: Session = Depends(get_db),
) -> Project:
    project = writable_project(db, user_id, project_id)
    for name, value in body.changes().items():
        setattr(project, name, value)
    db.commit()
    return project


@router.delete("/{project_id}", status_code=204)
def delete_project(
    project_id: uuid.UUID,
    request: Request,
    user_id: uuid.UUID = Depends(current_user_id),
    db: Session = Depends(get_db),
) -> Response:
    project = owned_project(db, user_id, project_id)
    storage_paths = list(db.scalars(select(Asset.storage_path).where(Asset.project_id == project.id)))
    db.delete(project)  # tasks and asset rows go with it (ON DELETE CASCADE)
    db.commit()
    remove_files(request.app.state.settings.assets_dir, storage_paths)
    return Response(status_code=204)


@router.post("/{project_id}/archive", response_model=ProjectOut)
def archive_project(
    project_id: uuid.UUID, user_id: uuid.UUID = Depends(current_user_id), db: Session = Depends(get_db)
) -> Project:
    project = owned_project(db, user_id, project_id)
    if project.archived_at is None:
        project.archived_at = datetime.now(timezone.utc)
        db.commit()
    return project


@router.post("/{project_id}/unarchive", response_model=ProjectOut)
def unarchive_project(
    project_id: uuid.UUID, user_id: uuid.UUID = Depends(current_user_id), db: Session = Depends(get_db)
) -> Project:
    project = owned_project(db, user_id, project_id)
    if project.archived_at is not None:
        project.archived_at = None
        db.commit()
    return project
