"""Task resources (FEATURES T1, X3): what a worker downloads before it starts an attempt.

The worker holding the attempt asks for its task's resources and gets one download URL per
resource. Each is checked with the rights of the task's *creator*, as they are now (a member
who lost access since submitting loses it for the task too): an attachment must exist in
the task's group and the creator must still read that group; an artifact's task must exist,
the creator must read its group, and it must have that artifact. The first resource that
fails decides the answer, 404 or 403, with a message naming the resource; the worker fails
the task with reason ``resource_error`` and that message instead of starting it.
"""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.keys import safe_relative_path
from mitosis_sdk.schemas import Resource
from mitosis_sdk.schemas.files import ArtifactLink, AttachmentLink, ResourceLink, file_key
from mitosis_server.db.models import Artifact, Attachment, Group, Membership, Task, User
from mitosis_server.errors import forbidden, invalid, not_found
from mitosis_server.services import artifacts, attachments
from mitosis_server.services.scheduling import held_attempt
from mitosis_server.services.uploads import Objects


async def _can_read(db: AsyncSession, user: User, group_id: int) -> bool:
    if user.is_admin:
        return True
    role = await db.scalar(
        select(Membership.role).where(
            Membership.group_id == group_id, Membership.user_id == user.id
        )
    )
    return role is not None  # every role includes read


async def resolve_resources(
    db: AsyncSession,
    objects: Objects,
    worker_uuid: uuid.UUID,
    task_uuid: uuid.UUID,
    attempt: int,
) -> list[ResourceLink]:
    """Download URLs for the task's resources, for the worker holding ``attempt``."""
    await held_attempt(db, worker_uuid, task_uuid, attempt)
    task = (
        await db.execute(
            select(Task.group_id, Task.creator_id, Task.spec, Group.name)
            .join(Group, Group.id == Task.group_id)
            .where(Task.uuid == task_uuid)
        )
    ).one()
    creator = await db.get_one(User, task.creator_id)
    links = []
    for resource in msgspec.convert((task.spec or {}).get("resources", []), list[Resource]):
        try:
            path = safe_relative_path(resource.path)
        except ValueError as exc:
            raise invalid("resources.path", str(exc)) from None
        if resource.attachment is not None:
            link = await _attachment(db, objects, creator, task.group_id, task.name, resource)
            links.append(
                ResourceLink(
                    path=path,
                    size=link.size,
                    url=link.url,
                    expires_at=link.expires_at,
                    attachment=link.key,
                )
            )
        else:
            link = await _artifact(db, objects, creator, resource)
            links.append(
                ResourceLink(
                    path=path,
                    size=link.size,
                    url=link.url,
                    expires_at=link.expires_at,
                    artifact=link.task,
                    type=link.type,
                )
            )
    return links


async def _attachment(
    db: AsyncSession,
    objects: Objects,
    creator: User,
    group_id: int,
    group: str,
    resource: Resource,
) -> AttachmentLink:
    try:
        key = file_key(resource.attachment)
    except ValueError as exc:
        raise invalid("resources.attachment", str(exc).removeprefix("key ")) from None
    if not await _can_read(db, creator, group_id):
        raise forbidden(
            f"resource {resource.path!r}: the task's creator {creator.name!r} can no longer"
            f" read group {group!r}"
        )
    row = await db.scalar(
        select(Attachment).where(Attachment.group_id == group_id, Attachment.key == key)
    )
    if row is None:
        raise not_found(f"resource {resource.path!r}: attachment {key!r} of group {group!r}")
    return await attachments.link_for(objects, row)


async def _artifact(
    db: AsyncSession, objects: Objects, creator: User, resource: Resource
) -> ArtifactLink:
    source = (
        await db.execute(select(Task.id, Task.group_id).where(Task.uuid == resource.artifact))
    ).one_or_none()
    if source is None:
        raise not_found(f"resource {resource.path!r}: task {resource.artifact}")
    if not await _can_read(db, creator, source.group_id):
        raise forbidden(
            f"resource {resource.path!r}: the task's creator {creator.name!r} may not read"
            f" task {resource.artifact}"
        )
    row = await db.scalar(
        select(Artifact).where(Artifact.task_id == source.id, Artifact.type == resource.type.value)
    )
    if row is None:
        raise not_found(
            f"resource {resource.path!r}: artifact {resource.type} of task {resource.artifact}"
        )
    return await artifacts.link_for(objects, row, resource.artifact)
