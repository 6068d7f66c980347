"""Project assets: streamed multipart upload, download, delete.

The bytes are on disk (see ``dynoserver.storage``) before the row that points
at them is committed; a failed upload removes its file. A cancelled one keeps a
file already committed (its row may still commit): at worst an orphan for the purge.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dynoserver.auth import current_user_id, uploader_id
from dynoserver.db import get_db, with_session
from dynoserver.errors import ApiError, error_responses, not_found
from dynoserver.models import Asset, Project, Task, User
from dynoserver.ownership import owned_project, writable_project
from dynoserver.schemas import AssetOut
from dynoserver.storage import FileSink, TooLarge, remove_files, resolve
from dynoserver.uploads import BadUpload, UploadedFile, receive_upload

log = logging.getLogger("dynoserver.assets")
router = APIRouter(prefix="/projects/{project_id}/assets", tags=["assets"])

# Types a browser only displays (or hands to a player or viewer) and never runs as
# part of our origin. Any other declared type (text/html, image/svg+xml,
# application/xhtml+xml, text/xml, JavaScript, ...) is served as an opaque
# download: a stored file must not become a page of the API's origin.
PASSIVE_TYPES = frozenset({
    "application/octet-stream", "application/pdf", "application/zip", "application/gzip",
    "application/json", "text/plain", "text/csv",
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp",
})  # fmt: skip
PASSIVE_PREFIXES = ("audio/", "video/")
_DOWNLOADED = {
    media_type: {"schema": {"type": "string", "format": "binary"}}
    for media_type in sorted(PASSIVE_TYPES) + [f"{prefix}*" for prefix in PASSIVE_PREFIXES]
}
_DOWNLOAD_RESPONSES: dict[int | str, dict] = {
    200: {"description": "The file, as an attachment, typed as uploaded if passive", "content": _DOWNLOADED},
    206: {"description": "The requested byte ranges (Range header)", "content": _DOWNLOADED},
    # Answered by Starlette's range handling, in plain text.
    400: {"description": "Malformed Range header", "content": {"text/plain": {"schema": {"type": "string"}}}},
    416: {"description": "Range not satisfiable", "content": {"text/plain": {"schema": {"type": "string"}}}},
}
# Even a passive file opened in a tab gets no scripts, plugins, forms or origin.
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
}

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,  # other parts are refused (uploads.TEXT_FIELDS)
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "task_id": {"type": "string", "format": "uuid"},
                    },
                }
            }
        },
    }
}


@router.post(
    "", status_code=201, response_model=AssetOut, openapi_extra=_UPLOAD_BODY, responses=error_responses(409)
)
async def upload_asset(
    project_id: uuid.UUID, request: Request, user_id: uuid.UUID = Depends(uploader_id)
) -> Asset:
    settings = request.app.state.settings
    # Ownership before a single body byte is stored: strangers cannot fill the disk.
    await run_in_threadpool(with_session, request, writable_project, user_id, project_id)
    room = await run_in_threadpool(with_session, request, _quota_room, user_id, settings.user_storage_quota_bytes)
    if room <= 0:
        raise _quota_exceeded(settings.user_storage_quota_bytes)
    # The sink stops the transfer at whichever limit comes first.
    sink = await run_in_threadpool(FileSink, settings.assets_dir, uuid.uuid4(), min(settings.max_upload_bytes, room))
    # Both discards are synchronous on purpose: they must run even when the request is cancelled.
    try:
        return await _store_upload(request, sink, user_id, project_id)
    except asyncio.CancelledError:
        # A cancelled await does not stop its worker thread: the row insert may still
        # commit. Keep a committed file; without a row it is an orphan the purge collects.
        sink.discard_partial()
        raise
    except BaseException:
        sink.discard()
        raise


async def _store_upload(request: Request, sink: FileSink, user_id: uuid.UUID, project_id: uuid.UUID) -> Asset:
    settings = request.app.state.settings
    try:
        upload = await receive_upload(request, sink)
    except TooLarge:
        if sink.size <= settings.max_upload_bytes:
            raise _quota_exceeded(settings.user_storage_quota_bytes) from None
        raise ApiError(413, "too_large", f"the file exceeds {settings.max_upload_bytes} bytes") from None
    except BadUpload as exc:
        raise ApiError(400, "bad_upload", str(exc)) from None
    await run_in_threadpool(sink.commit)
    return await run_in_threadpool(
        with_session, request, _insert_asset, user_id, project_id, sink, upload, settings.user_storage_quota_bytes
    )


def upload_routes() -> list[APIRoute]:
    """The routes that take a whole upload as their body (the app includes this router without a prefix)."""
    return [route for route in router.routes if isinstance(route, APIRoute) and route.endpoint is upload_asset]


@router.get("", response_model=list[AssetOut])
def list_assets(
    project_id: uuid.UUID, user_id: uuid.UUID = Depends(current_user_id), db: Session = Depends(get_db)
) -> list[Asset]:
    owned_project(db, user_id, project_id)
    return list(db.scalars(select(Asset).where(Asset.project_id == project_id).order_by(Asset.created_at, Asset.id)))


@router.get("/{asset_id}", response_model=AssetOut)
def get_asset(
    project_id: uuid.UUID,
    asset_id: uuid.UUID,
    user_id: uuid.UUID = Depends(current_user_id),
    db: Session = Depends(get_db),
) -> Asset:
    owned_project(db, user_id, project_id)
    return _asset_of(db, project_id, asset_id)


@router.get("/{asset_id}/content", response_class=FileResponse, responses=_DOWNLOAD_RESPONSES)
def download_asset(
    project_id: uuid.UUID,
    asset_id: uuid.UUID,
    request: Request,
    user_id: uuid.UUID = Depends(current_user_id),
    db: Session = Depends(get_db),
) -> FileResponse:
    owned_project(db, user_id, project_id)
    asset = _asset_of(db, project_id, asset_id)
    path = resolve(request.app.state.settings.assets_dir, asset.storage_path)
    if not path.is_file():
        log.error("asset %s has a row but no file at %s", asset.id, asset.storage_path)
        raise ApiError(404, "asset_file_missing", "the asset's file is missing on the server")
    return FileResponse(
        path,
        media_type=served_type(asset.content_type),
        filename=asset.original_name,  # sent as an attachment, never rendered inline
        headers=DOWNLOAD_HEADERS,
    )


def served_type(declared: str) -> str:
    """The Content-Type a download is served with: the declared one only when it is passive."""
    if declared in PASSIVE_TYPES or declared.startswith(PASSIVE_PREFIXES):
        return declared
    return "application/octet-stream"


@router.delete("/{asset_id}", status_code=204, responses=error_responses(409))
def delete_asset(
    project_id: uuid.UUID,
    asset_id: uuid.UUID,
    request: Request,
    user_id: uuid.UUID = Depends(current_user_id),
    db: Session = Depends(get_db),
) -> Response:
    writable_project(db, user_id, project_id)
    asset = _asset_of(db, project_id, asset_id)
    db.delete(asset)
    db.commit()
    remove_files(request.app.state.settings.assets_dir, [asset.storage_path])
    return Response(status_code=204)


def _insert_asset(
    db: Session, user_id: uuid.UUID, project_id: uuid.UUID, sink: FileSink, upload: UploadedFile, quota: int
) -> Asset:
    # Checked again under a share lock: the project may have been archived or
    # deleted while the bytes were arriving.
    writable_project(db, user_id, project_id, lock=True)
    # The user's row lock serialises this user's concurrent uploads, so that two of
    # them cannot both fit in the room that only one had.
    db.execute(select(User.id).where(User.id == user_id).with_for_update())
    if _quota_room(db, user_id, quota) < sink.size:
        raise _quota_exceeded(quota)
    asset = Asset(
        id=sink.asset_id,
        project_id=project_id,
        task_id=_task_id_in(db, project_id, upload.fields.get("task_id")),
        original_name=upload.original_name,
        content_type=upload.content_type,
        size=sink.size,
        sha256=sink.sha256,
        storage_path=sink.storage_path,
    )
    db.add(asset)
    db.commit()
    return asset


def _quota_room(db: Session, user_id: uuid.UUID, quota: int) -> int:
    """Bytes the user may still store: the quota less the sizes of all their projects' assets."""
    used = db.scalar(
        select(func.coalesce(func.sum(Asset.size), 0)).join(Project, Asset.project_id == Project.id)
        .where(Project.owner_id == user_id)
    )  # fmt: skip
    return quota - int(used)


def _quota_exceeded(quota: int) -> ApiError:
    return ApiError(413, "quota_exceeded", f"this upload would exceed your storage quota of {quota} bytes")


def _task_id_in(db: Session, project_id: uuid.UUID, raw: str | None) -> uuid.UUID | None:
    if not raw:
        return None
    try:
        task_id = uuid.UUID(raw)
    except ValueError:
        raise ApiError(422, "invalid_task_id", "task_id must be a UUID") from None
    if db.scalar(select(Task.id).where(Task.id == task_id, Task.project_id == project_id)) is None:
        raise ApiError(404, "unknown_task", "task_id does not name a task of this project")
    return task_id


def _asset_of(db: Session, project_id: uuid.UUID, asset_id: uuid.UUID) -> Asset:
    asset = db.scalar(select(Asset).where(Asset.id == asset_id, Asset.project_id == project_id))
    if asset is None:
        raise not_found("asset")
    return asset

