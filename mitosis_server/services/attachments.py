"""Group attachments (FEATURES F3): files under path-like keys, read by members, written by
members with ``write``.

Keys arrive canonical (the wire schemas normalise them) or are normalised here when they come
as query parameters; either way a bad key is a 400 naming the rule. Uploading to an existing
key replaces the file once the new version is complete: until then readers get the old one,
and the group is charged for both (the bytes really are stored twice meanwhile). Deleting or
replacing gives the old size back exactly.

Filters are case-sensitive on both databases: ``prefix`` compares the key's first characters,
``contains`` asks whether removing the text changes the key (portable, unlike LIKE, which
folds ASCII case on SQLite and needs escaping everywhere).
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas import Role
from mitosis_sdk.schemas.files import (
    AttachmentInfo,
    AttachmentLink,
    AttachmentLinks,
    AttachmentPage,
    AttachmentSelection,
    AttachmentUploadBegin,
    CompletedPart,
    DeleteReply,
    FolderEntry,
    FolderPage,
    UploadTicket,
    file_key,
)
from mitosis_server.db.dialects import position_of
from mitosis_server.db.models import Attachment, Group, PendingUpload, User, utcnow
from mitosis_server.errors import invalid, not_found
from mitosis_server.services import quotas, uploads
from mitosis_server.services.auth import Principal
from mitosis_server.services.groups import require_role
from mitosis_server.services.uploads import Objects
from mitosis_server.storage.base import BucketKind

BUCKET = BucketKind.ATTACHMENTS


def checked_key(text: str) -> str:
    try:
        return file_key(text)
    except ValueError as exc:
        raise invalid("key", str(exc).removeprefix("key ")) from None


def _missing(group: Group, key: str) -> Exception:
    return not_found(f"attachment {key!r} in group {group.name!r}")


def filter_conditions(
    group_id: int, prefix: str | None, contains: str | None, keys: list[str] = ()
) -> list[ColumnElement[bool]]:
    conditions = [Attachment.group_id == group_id]
    if keys:
        conditions.append(Attachment.key.in_(keys))
    if prefix:
        conditions.append(func.substr(Attachment.key, 1, len(prefix)) == prefix)
    if contains:
        conditions.append(func.replace(Attachment.key, contains, "") != Attachment.key)
    return conditions


def _info(row: Attachment, group: str, creator: str) -> AttachmentInfo:
    return AttachmentInfo(
        group=group,
        key=row.key,
        size=row.size,
        content_type=row.content_type,
        creator=creator,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _infos(db: AsyncSession, group: Group, rows: list[Attachment]) -> list[AttachmentInfo]:
    ids = {row.creator_id for row in rows}
    names = dict((await db.execute(select(User.id, User.name).where(User.id.in_(ids)))).all())
    return [_info(row, group.name, names.get(row.creator_id, "")) for row in rows]


# --- uploads ---------------------------------------------------------------------------------


async def begin_upload(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    group_name: str,
    request: AttachmentUploadBegin,
) -> UploadTicket:
    """Check ``write``, the key and the quota, then hand out the upload URLs."""
    group, _ = await require_role(db, principal, group_name, Role.WRITE)
    upload_id = uuid.uuid4()
    row = PendingUpload(
        id=upload_id,
        group_id=group.id,
        bucket=BUCKET.value,
        object=uploads.new_object_name(str(group.id), upload_id),
        size=request.size,
        key=request.key,
        content_type=request.content_type,
        creator_id=principal.user_id,
    )
    return await uploads.begin_upload(db, objects, row)


def _mine(principal: Principal, group: Group) -> list[ColumnElement[bool]]:
    return [
        PendingUpload.group_id == group.id,
        PendingUpload.bucket == BUCKET.value,
        PendingUpload.creator_id == principal.user_id,
    ]


async def complete_upload(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    group_name: str,
    upload_id: uuid.UUID,
    parts: list[CompletedPart],
) -> AttachmentInfo:
    """Record the uploaded file under its key, replacing (and freeing) an older version."""
    group, _ = await require_role(db, principal, group_name, Role.WRITE)
    row = await uploads.find_upload(db, upload_id, *_mine(principal, group))
    size = await uploads.finish_upload(db, objects, row, parts)
    now = utcnow()
    current = await db.scalar(
        select(Attachment)
        .where(Attachment.group_id == group.id, Attachment.key == row.key)
        .with_for_update()
    )
    if current is None:
        current = Attachment(group_id=group.id, key=row.key, created_at=now)
        db.add(current)
    else:
        await quotas.adjust(db, group.id, -current.size)
        uploads.drop_after_commit(db, objects, BUCKET, [current.object])
    current.object = row.object
    current.size = size
    current.content_type = row.content_type
    current.creator_id = principal.user_id
    current.updated_at = now
    await db.flush()
    return _info(current, group.name, principal.username)


async def abort_upload(
    db: AsyncSession, objects: Objects, principal: Principal, group_name: str, upload_id: uuid.UUID
) -> None:
    group, _ = await require_role(db, principal, group_name, Role.WRITE)
    row = await uploads.find_upload(db, upload_id, *_mine(principal, group))
    await uploads.abort_upload(db, objects, row)


# --- reading ---------------------------------------------------------------------------------


async def _attachment(db: AsyncSession, group: Group, key: str, *, lock: bool = False):
    statement = select(Attachment).where(Attachment.group_id == group.id, Attachment.key == key)
    row = await db.scalar(statement.with_for_update() if lock else statement)
    if row is None:
        raise _missing(group, key)
    return row


async def get_attachment(
    db: AsyncSession, principal: Principal, group_name: str, key: str
) -> AttachmentInfo:
    key = checked_key(key)
    group, _ = await require_role(db, principal, group_name, Role.READ)
    return (await _infos(db, group, [await _attachment(db, group, key)]))[0]


async def link_for(objects: Objects, row: Attachment) -> AttachmentLink:
    url = await objects.store.presign_download(
        BUCKET, row.object, objects.url_lifetime, filename=row.key.rpartition("/")[2]
    )
    expires_at = int(objects.store.clock()) + int(objects.url_lifetime)
    return AttachmentLink(key=row.key, size=row.size, url=url, expires_at=expires_at)


async def download_link(
    db: AsyncSession, objects: Objects, principal: Principal, group_name: str, key: str
) -> AttachmentLink:
    key = checked_key(key)
    group, _ = await require_role(db, principal, group_name, Role.READ)
    return await link_for(objects, await _attachment(db, group, key))


async def query_attachments(
    db: AsyncSession,
    principal: Principal,
    group_name: str,
    *,
    prefix: str | None,
    contains: str | None,
    limit: int,
    offset: int,
) -> AttachmentPage:
    """A page of a group's attachments in key order, with the total count."""
    group, _ = await require_role(db, principal, group_name, Role.READ)
    conditions = filter_conditions(group.id, prefix, contains)
    total = await db.scalar(select(func.count()).select_from(Attachment).where(*conditions))
    rows = await db.scalars(
        select(Attachment).where(*conditions).order_by(Attachment.key).offset(offset).limit(limit)
    )
    return AttachmentPage(attachments=await _infos(db, group, list(rows)), total=total)


async def list_folder(
    db: AsyncSession,
    principal: Principal,
    group_name: str,
    prefix: str,
    *,
    limit: int,
    offset: int,
) -> FolderPage:
    """A page of one folder's entries: the names right under ``prefix`` (a canonical folder
    prefix, or empty for the top), sub-folders first.

    Folders exist only as key prefixes, so the entries are computed by grouping the keys under
    ``prefix`` on their next segment, in SQL: a folder above a million files costs one grouped
    scan on the coordinator, never a million rows on the wire.
    """
    group, _ = await require_role(db, principal, group_name, Role.READ)
    rest = func.substr(Attachment.key, len(prefix) + 1)
    slash = position_of(rest, "/")
    entry = case((slash > 0, func.substr(rest, 1, slash)), else_=rest).label("entry")
    folder = func.max(case((slash > 0, 1), else_=0)).label("folder")
    children = (
        select(
            entry,
            folder,
            func.count().label("files"),
            func.sum(Attachment.size).label("size"),
            func.max(Attachment.updated_at).label("updated_at"),
        )
        .where(*filter_conditions(group.id, prefix, None))
        .group_by(entry)
    )
    total = await db.scalar(select(func.count()).select_from(children.subquery()))
    rows = (
        await db.execute(children.order_by(folder.desc(), entry).offset(offset).limit(limit))
    ).all()
    file_keys = [prefix + row.entry for row in rows if not row.folder]
    files = await db.scalars(
        select(Attachment).where(Attachment.group_id == group.id, Attachment.key.in_(file_keys))
    )
    infos = {info.key: info for info in await _infos(db, group, list(files))}
    entries = [
        FolderEntry(
            name=row.entry,
            key=prefix + row.entry,
            folder=bool(row.folder),
            size=int(row.size or 0),
            files=row.files,
            updated_at=row.updated_at,
            attachment=None if row.folder else infos.get(prefix + row.entry),
        )
        for row in rows
    ]
    return FolderPage(prefix=prefix, entries=entries, total=total or 0)


async def download_links(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    group_name: str,
    selection: AttachmentSelection,
) -> AttachmentLinks:
    """Download URLs for a selection (a page of it, in key order); listed keys must exist."""
    group, _ = await require_role(db, principal, group_name, Role.READ)
    conditions = filter_conditions(group.id, selection.prefix, selection.contains, selection.keys)
    total = await db.scalar(select(func.count()).select_from(Attachment).where(*conditions))
    rows = list(
        await db.scalars(
            select(Attachment)
            .where(*conditions)
            .order_by(Attachment.key)
            .offset(selection.offset)
            .limit(selection.limit)
        )
    )
    if selection.keys and total < len(set(selection.keys)):
        found = set(await db.scalars(select(Attachment.key).where(*conditions)))
        raise _missing(group, min(set(selection.keys) - found))
    return AttachmentLinks(links=[await link_for(objects, row) for row in rows], total=total)


# --- deleting --------------------------------------------------------------------------------


async def delete_attachment(
    db: AsyncSession, objects: Objects, principal: Principal, group_name: str, key: str
) -> None:
    key = checked_key(key)
    group, _ = await require_role(db, principal, group_name, Role.WRITE)
    row = await _attachment(db, group, key, lock=True)
    await db.execute(delete(Attachment).where(Attachment.id == row.id))
    await quotas.adjust(db, group.id, -row.size)
    uploads.drop_after_commit(db, objects, BUCKET, [row.object])


async def delete_attachments(
    db: AsyncSession,
    objects: Objects,
    principal: Principal,
    group_name: str,
    selection: AttachmentSelection,
) -> DeleteReply:
    """Delete a selection at once (pages do not apply); listed keys that do not exist are
    not an error, the reply counts what was deleted."""
    group, _ = await require_role(db, principal, group_name, Role.WRITE)
    conditions = filter_conditions(group.id, selection.prefix, selection.contains, selection.keys)
    rows = (
        await db.execute(
            delete(Attachment)
            .execution_options(synchronize_session=False)
            .where(*conditions)
            .returning(Attachment.object, Attachment.size)
        )
    ).all()
    freed = sum(row.size for row in rows)
    await quotas.adjust(db, group.id, -freed)
    uploads.drop_after_commit(db, objects, BUCKET, [row.object for row in rows])
    return DeleteReply(deleted=len(rows), freed=freed)
