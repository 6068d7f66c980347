"""Tasks of a project. Reads work on archived projects; changes do not."""

from __future__ import annotations

import uuid
from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from dynoserver.auth import current_user_id
from dynoserver.db import get_db
from dynoserver.errors import ApiError, error_responses, not_found
from dynoserver.limits import JsonGuardRoute
from dynoserver.models import Task, User
from dynoserver.ownership import owned_project, writable_project
from dynoserver.projects import MAX_OFFSET, MAX_PAGE
from dynoserver.schemas import TaskCreate, TaskOut, TaskStatus, TaskUpdate

router = APIRouter(prefix="/projects/{project_id}/tasks", tags=["tasks"], route_class=JsonGuardRoute)


@router.get("", response_model=list[TaskOut])
def list_tasks(
    project_id: uuid.UUID,
    status: TaskStatus | None = None,
    limit: int = Query(100, ge=1, le=MAX_PAGE),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    user_id: uuid.UUID = Depends(current_user_id),
    db: Session = Depends(get_db),
) -> list[Task]:
    owned_project(db, user_id, project_id)
    query = select(Task).where(Task.project_id == project_id)
    if status is not None:
        query = query.where(Task.status == status)
    return list(db.scalars(query.order_by(Task.created_at, Task.id).limit(limit).offset(offset)))


@router.post("", status_code=201, response_model=TaskOut, responses=error_responses(409))
def create_task(
    project_id: uuid.UUID,
    body: TaskCreate,
    user_id: uuid.UUID = Depends(current_user_id),
    db: Session = Depends(get_db),
) -> Task:
    writable_project(db, user_id, project_id, lock=True)
    _check_assignee(db, body.assignee_id)
    task = Task(project_id=project_id, **body.model_dump())
    db.add(task)
    db.commit()
    return task


@router.get("/{task_id}", response_model=TaskOut)
def get_task(
    project_id: uuid.UUID,
    task_id: uuid.UUID,
    user_id: uuid.UUID = Depends(current_user_id),
    db: Session = Depends(get_db),
) -> Task:
    owned_project(db, user_id, project_id)
    return _task_of(db, project_id, task_id)


@router.patch("/{task_id}", response_model=TaskOut, responses=error_responses(409))
def update_task(
    project_id: uuid.UUID,
    task_id: uuid.UUID,
    body: TaskUpdate,
    user_id: uuid.UUID = Depends(current_user_id),
    db: Session = Depends(get_db),
) -> Task:
    writable_project(db, user_id, project_id)
    task = _task_of(db, project_id, task_id)
    changes = body.changes()
    _check_assignee(db, changes.get("assignee_id"))
    for name, value in changes.items():
        setattr(task, name, value)
    db.commit()
    return task


@router.delete("/{task_id}", status_code=204, responses=error_responses(409))
def delete_task(
    project_id: uuid.UUID,
    task_id: uuid.UUID,
    user_id: uuid.UUID = Depends(current_user_id),
    db: Session = Depends(get_db),
) -> Response:
    writable_project(db, user_id, project_id)
    db.delete(_task_of(db, project_id, task_id))
    db.commit()
    return Response(status_code=204)


def _task_of(db: Session, project_id: uuid.UUID, task_id: uuid.UUID) -> Task:
    task = db.scalar(select(Task).where(Task.id == task_id, Task.project_id == project_id))
    if task is None:
        raise not_found("task")
    return task


def _check_assignee(db: Session, assignee_id: uuid.UUID | None) -> None:
    if assignee_id is not None and db.get(User, assignee_id) is None:
        # 404, not 422: the request is well formed; what it names does not exist.
        raise ApiError(404, "unknown_assignee", "assignee_id does not name an existing user")
