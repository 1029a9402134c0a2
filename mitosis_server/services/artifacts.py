"""Task artifacts (FEATURES F2, X4): one file per task and type (``result``, ``exec-log``,
``std-log``), charged to the task's group.

Two kinds of uploader, one rule each:

* the worker holding the task's open attempt, with its own token: it names the attempt, and
  both begin and complete check that it still holds it (the attempt fencing of T8), so a
  zombie worker's upload is refused with 409 and never replaces a newer attempt's output;
* a user with ``write`` in the task's group, at any time.

Reading needs ``read`` in the task's group; deleting needs ``write``. Selections by filter go
through the task filter of :mod:`task_queries`, so "which tasks may this caller touch" is
decided in one place.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas import ArtifactType, Role
from mitosis_sdk.schemas.files import (
    ArtifactInfo,
    ArtifactLink,
    ArtifactLinks,
    ArtifactSelection,
    ArtifactUploadBegin,
    CompletedPart,
    DeleteReply,
    UploadTicket,
)
from mitosis_server.db.models import Artifact, PendingUpload, Task, User, Worker, utcnow
from mitosis_server.errors import invalid, not_found
from mitosis_server.services import quotas, uploads
from mitosis_server.services.auth import Principal
from mitosis_server.services.scheduling import held_attempt
from mitosis_server.services.task_queries import (
    filter_conditions,
    hidden_task,
    require_task_role,
)
from mitosis_server.services.uploads import Objects
from mitosis_server.storage.base import BucketKind

BUCKET = BucketKind.ARTIFACTS


def filename(task_uuid: uuid.UUID, kind: ArtifactType | str) -> str:
    """What a downloaded artifact is called: ``<task uuid>-<type>.tar.gz``."""
    return f"{task_uuid}-{ArtifactType(kind).value}.tar.gz"


async def _task(
    db: AsyncSession, principal: Principal | None, task_uuid: uuid.UUID, needed: Role
) -> tuple[int, int]:
    """(task id, group id); 404 when the caller cannot see the task, 403 when the role is
    too low. ``principal`` None: a worker whose attempt was already checked."""
    row = (
        await db.execute(select(Task.id, Task.group_id).where(Task.uuid == task_uuid))
    ).one_or_none()
    if row is None:
        raise hidden_task(task_uuid)
    if principal is not None:
        await require_task_role(db, principal, task_uuid, row.group_id, needed)
    return row.id, row.group_id


async def holding_worker(
    db: AsyncSession, worker_uuid: uuid.UUID, task_uuid: uuid.UUID, attempt: int
) -> int:
    """The worker's row id, once it is known to hold ``attempt`` of the task; else the 4xx
    of :func:`scheduling.held_attempt` (404, 403 another worker's, 409 superseded/ended)."""
    await held_attempt(db, worker_uuid, task_uuid, attempt)
    return await db.scalar(select(Worker.id).where(Worker.uuid == worker_uuid))


def _missing(task_uuid: uuid.UUID, kind: ArtifactType) -> Exception:
    return not_found(f"artifact {kind} of task {task_uuid}")


async def _artifact(
    db: AsyncSession, task_id: int, task_uuid: uuid.UUID, kind: ArtifactType, *, lock=False
) -> Artifact:
    statement = select(Artifact).where(Artifact.task_id == task_id, Artifact.type == kind.value)
    row = await db.scalar(statement.with_for_update() if lock else statement)
    if row is None:
        raise _missing(task_uuid, kind)
    return row


def _info(row: Artifact, task_uuid: uuid.UUID, uploaded_by: str) -> ArtifactInfo:
    return ArtifactInfo(
        task=task_uuid,
        type=ArtifactType(row.type),
        size=row.size,
        created_at=row.created_at,
        uploaded_by=uploaded_by,
        attempt=row.attempt,
    )


# --- uploads ---------------------------------------------------------------------------------


async def _begin(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    task: tuple[int, int],
    task_uuid: uuid.UUID,
    kind: ArtifactType,
    size: int,
    worker: tuple[int, int] | None = None,
) -> UploadTicket:
    upload_id = uuid.uuid4()
    row = PendingUpload(
        id=upload_id,
        group_id=task[1],
        bucket=BUCKET.value,
        object=uploads.new_object_name(f"{task_uuid}/{kind.value}", upload_id),
        size=size,
        task_id=task[0],
        type=kind.value,
        worker_id=worker[0] if worker else None,
        attempt=worker[1] if worker else None,
        creator_id=principal.user_id,
    )
    return await uploads.begin_upload(db, objects, row)


async def begin_upload(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    task_uuid: uuid.UUID,
    kind: ArtifactType,
    request: ArtifactUploadBegin,
) -> UploadTicket:
    """A user's upload (``write`` in the task's group)."""
    if request.attempt is not None:
        raise invalid("attempt", "only a worker names the attempt it uploads for")
    task = await _task(db, principal, task_uuid, Role.WRITE)
    return await _begin(db, objects, principal, task, task_uuid, kind, request.size)


async def begin_worker_upload(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    worker_uuid: uuid.UUID,
    task_uuid: uuid.UUID,
    kind: ArtifactType,
    request: ArtifactUploadBegin,
) -> UploadTicket:
    """The worker's upload for the attempt it holds (409 when superseded or ended)."""
    if request.attempt is None:
        raise invalid("attempt", "name the attempt this upload belongs to")
    worker_id = await holding_worker(db, worker_uuid, task_uuid, request.attempt)
    task = await _task(db, None, task_uuid, Role.WRITE)
    worker = (worker_id, request.attempt)
    return await _begin(db, objects, principal, task, task_uuid, kind, request.size, worker)


async def _store(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    task_uuid: uuid.UUID,
    row: PendingUpload,
    parts: list[CompletedPart],
) -> ArtifactInfo:
    size = await uploads.finish_upload(db, objects, row, parts)
    current = await db.scalar(
        select(Artifact)
        .where(Artifact.task_id == row.task_id, Artifact.type == row.type)
        .with_for_update()
    )
    if current is None:
        current = Artifact(task_id=row.task_id, group_id=row.group_id, type=row.type)
        db.add(current)
    else:
        await quotas.adjust(db, current.group_id, -current.size)
        uploads.drop_after_commit(db, objects, BUCKET, [current.object])
    current.object = row.object
    current.size = size
    current.attempt = row.attempt
    current.creator_id = principal.user_id
    current.created_at = utcnow()
    await db.flush()
    return _info(current, task_uuid, principal.username)


def _user_upload(principal: Principal, task_id: int) -> list[ColumnElement[bool]]:
    return [
        PendingUpload.task_id == task_id,
        PendingUpload.worker_id.is_(None),
        PendingUpload.creator_id == principal.user_id,
    ]


async def complete_upload(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    task_uuid: uuid.UUID,
    upload_id: uuid.UUID,
    parts: list[CompletedPart],
) -> ArtifactInfo:
    task_id, _ = await _task(db, principal, task_uuid, Role.WRITE)
    row = await uploads.find_upload(db, upload_id, *_user_upload(principal, task_id))
    return await _store(db, objects, principal, task_uuid, row, parts)


async def _worker_upload(
    db: AsyncSession, worker_uuid: uuid.UUID, task_uuid: uuid.UUID, upload_id: uuid.UUID
) -> PendingUpload:
    worker_id = await db.scalar(select(Worker.id).where(Worker.uuid == worker_uuid))
    task_id, _ = await _task(db, None, task_uuid, Role.WRITE)
    row = await uploads.find_upload(
        db, upload_id, PendingUpload.task_id == task_id, PendingUpload.worker_id == worker_id
    )
    return row


async def complete_worker_upload(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    worker_uuid: uuid.UUID,
    task_uuid: uuid.UUID,
    upload_id: uuid.UUID,
    parts: list[CompletedPart],
) -> ArtifactInfo:
    """Record the worker's artifact if it still holds the attempt (else 409; abort then)."""
    row = await _worker_upload(db, worker_uuid, task_uuid, upload_id)
    await held_attempt(db, worker_uuid, task_uuid, row.attempt)
    return await _store(db, objects, principal, task_uuid, row, parts)


async def abort_upload(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    task_uuid: uuid.UUID,
    upload_id: uuid.UUID,
) -> None:
    task_id, _ = await _task(db, principal, task_uuid, Role.WRITE)
    row = await uploads.find_upload(db, upload_id, *_user_upload(principal, task_id))
    await uploads.abort_upload(db, objects, row)


async def abort_worker_upload(
    db: AsyncSession,
    objects: Objects,
    worker_uuid: uuid.UUID,
    task_uuid: uuid.UUID,
    upload_id: uuid.UUID,
) -> None:
    """Always allowed for the worker's own uploads, superseded or not: it only gives back."""
    row = await _worker_upload(db, worker_uuid, task_uuid, upload_id)
    await uploads.abort_upload(db, objects, row)


# --- reading ---------------------------------------------------------------------------------


async def list_artifacts(
    db: AsyncSession, principal: Principal, task_uuid: uuid.UUID
) -> list[ArtifactInfo]:
    task_id, _ = await _task(db, principal, task_uuid, Role.READ)
    rows = (
        await db.execute(
            select(Artifact, User.name)
            .join(User, User.id == Artifact.creator_id)
            .where(Artifact.task_id == task_id)
            .order_by(Artifact.type)
        )
    ).all()
    return [_info(row, task_uuid, name) for row, name in rows]


async def link_for(objects: Objects, row: Artifact, task_uuid: uuid.UUID) -> ArtifactLink:
    url = await objects.store.presign_download(
        BUCKET, row.object, objects.url_lifetime, filename=filename(task_uuid, row.type)
    )
    return ArtifactLink(
        task=task_uuid,
        type=ArtifactType(row.type),
        size=row.size,
        url=url,
        expires_at=int(objects.store.clock()) + int(objects.url_lifetime),
    )


async def download_link(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    task_uuid: uuid.UUID,
    kind: ArtifactType,
) -> ArtifactLink:
    task_id, _ = await _task(db, principal, task_uuid, Role.READ)
    return await link_for(objects, await _artifact(db, task_id, task_uuid, kind), task_uuid)


def _selected(conditions: list, kind: ArtifactType | None) -> list[ColumnElement[bool]]:
    matching = select(Task.id).where(*conditions)
    selected = [Artifact.task_id.in_(matching)]
    if kind is not None:
        selected.append(Artifact.type == kind.value)
    return selected


async def download_links(
    db: AsyncSession, objects: Objects, principal: Principal, selection: ArtifactSelection
) -> ArtifactLinks:
    """URLs for the artifacts of the tasks the caller may read that match, newest task
    first, a page at a time, with the total count."""
    conditions = await filter_conditions(db, principal, selection.filter, Role.READ)
    selected = _selected(conditions, selection.type)
    total = await db.scalar(select(func.count()).select_from(Artifact).where(*selected))
    rows = (
        await db.execute(
            select(Artifact, Task.uuid)
            .join(Task, Task.id == Artifact.task_id)
            .where(*selected)
            .order_by(Artifact.task_id.desc(), Artifact.type)
            .offset(selection.offset)
            .limit(selection.limit)
        )
    ).all()
    return ArtifactLinks(
        links=[await link_for(objects, row, task_uuid) for row, task_uuid in rows], total=total
    )


# --- deleting --------------------------------------------------------------------------------


async def delete_artifact(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    task_uuid: uuid.UUID,
    kind: ArtifactType,
) -> None:
    task_id, group_id = await _task(db, principal, task_uuid, Role.WRITE)
    row = await _artifact(db, task_id, task_uuid, kind, lock=True)
    await db.execute(delete(Artifact).where(Artifact.id == row.id))
    await quotas.adjust(db, group_id, -row.size)
    uploads.drop_after_commit(db, objects, BUCKET, [row.object])


async def delete_artifacts(
    db: AsyncSession, objects: Objects, principal: Principal, selection: ArtifactSelection
) -> DeleteReply:
    """Delete the artifacts of the matching tasks the caller may write (pages do not apply)."""
    if selection.filter.empty:
        raise invalid("filter", "name at least one condition (a group, UUIDs, states ...)")
    conditions = await filter_conditions(db, principal, selection.filter, Role.WRITE)
    rows = (
        await db.execute(
            delete(Artifact)
            .execution_options(synchronize_session=False)
            .where(*_selected(conditions, selection.type))
            .returning(Artifact.group_id, Artifact.object, Artifact.size)
        )
    ).all()
    freed: dict[int, int] = {}
    for row in rows:
        freed[row.group_id] = freed.get(row.group_id, 0) - row.size
    await quotas.adjust_many(db, freed)
    uploads.drop_after_commit(db, objects, BUCKET, [row.object for row in rows])
    return DeleteReply(deleted=len(rows), freed=-sum(freed.values()))
