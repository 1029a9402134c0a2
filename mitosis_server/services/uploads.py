"""Uploads in flight, for attachments and artifacts alike: begin, complete, abort, expire.

*Begin* reserves the declared size in the group's quota (refused with 422 before any byte
moves), names a fresh object and presigns the transfer. *Complete* asks the store what it
really holds (S3 ``HEAD``, or the multipart completion's size) and accepts the file only when
that is exactly the declared size; the caller then records the attachment or artifact, which
takes over the reservation. *Abort*, and the sweeper once ``complete_by`` has passed, give the
reservation back and drop the object.

Objects are removed from the store only after the transaction that forgot them commits
(``session.info["after_commit"]``): a rolled-back request never loses bytes that the
database still points to. A removal that fails afterwards leaves an orphan object, logged,
never a row pointing at nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mitosis_sdk.schemas.files import CompletedPart, UploadTicket
from mitosis_server.db.models import PendingUpload, utcnow
from mitosis_server.errors import invalid, not_found
from mitosis_server.services import quotas
from mitosis_server.storage.base import BucketKind, ObjectStore, StorageError, UploadIncomplete

log = logging.getLogger(__name__)

_SWEEP_BATCH = 500


@dataclass(frozen=True)
class Objects:
    """What file services need besides the session: the store and how long URLs live."""

    store: ObjectStore
    url_lifetime: float

    @property
    def complete_window(self) -> timedelta:
        # A PUT that starts just before its URL expires still has a URL lifetime to finish.
        return timedelta(seconds=2 * self.url_lifetime)


def new_object_name(prefix: str, upload_id: uuid.UUID) -> str:
    """A store key of our own making: ``prefix/<upload id>``; never built from user text."""
    return f"{prefix}/{upload_id.hex}"


async def begin_upload(db: AsyncSession, objects: Objects, row: PendingUpload) -> UploadTicket:
    """Reserve ``row.size`` in ``row.group_id``'s quota, presign, and record the upload."""
    await quotas.reserve(db, row.group_id, row.size)
    upload = await objects.store.presign_upload(
        BucketKind(row.bucket), row.object, row.size, objects.url_lifetime
    )
    now = utcnow()
    row.created_at = now
    row.complete_by = now + objects.complete_window
    row.multipart_id = upload.multipart.upload_id if upload.multipart else None
    db.add(row)
    await db.flush()
    return UploadTicket(id=row.id, size=row.size, complete_by=row.complete_by, upload=upload)


async def find_upload(
    db: AsyncSession, upload_id: uuid.UUID, *conditions: ColumnElement[bool]
) -> PendingUpload:
    """The upload ``upload_id`` matching ``conditions`` (its owner, its target), locked; 404
    when there is none, it belongs to someone else, or it has expired."""
    row = await db.scalar(
        select(PendingUpload)
        .where(PendingUpload.id == upload_id, PendingUpload.complete_by >= utcnow(), *conditions)
        .with_for_update()
    )
    if row is None:
        raise not_found(f"upload {upload_id} (or it has expired, or is not yours)")
    return row


async def finish_upload(
    db: AsyncSession, objects: Objects, row: PendingUpload, parts: Sequence[CompletedPart]
) -> int:
    """Check what the store holds for ``row`` and forget the upload; returns the size.

    The size must be exactly the declared one. A mismatch (a multipart upload completed with
    a part left out, say) discards the object but keeps the reservation, so the caller can
    upload again or abort: nothing half-written is ever recorded.
    """
    store, bucket = objects.store, BucketKind(row.bucket)
    if row.multipart_id is not None:
        if not parts:
            raise invalid("parts", "this is a multipart upload: list its parts and ETags")
        try:
            size = await store.complete_multipart(bucket, row.object, row.multipart_id, parts)
        except UploadIncomplete:
            # An earlier complete may have joined the parts and then failed to commit.
            size = await store.head(bucket, row.object)
            if size is None:
                raise
    else:
        if parts:
            raise invalid("parts", "this upload is a single PUT: complete it without parts")
        size = await store.head(bucket, row.object)
        if size is None:
            raise UploadIncomplete(
                "nothing has been uploaded yet: PUT the file to the upload URL, then complete"
            )
    if size != row.size:
        await store.delete(bucket, [row.object])
        raise invalid(
            "size",
            f"the store received {size} bytes, not the {row.size} declared; they were discarded"
            " (upload again, or abort the upload)",
        )
    await db.execute(delete(PendingUpload).where(PendingUpload.id == row.id))
    return size


async def abort_upload(db: AsyncSession, objects: Objects, row: PendingUpload) -> None:
    """Forget the upload, give its reservation back, drop whatever was sent."""
    await db.execute(delete(PendingUpload).where(PendingUpload.id == row.id))
    await quotas.adjust(db, row.group_id, -row.size)
    drop_after_commit(db, objects, BucketKind(row.bucket), [row.object], [row])


def drop_after_commit(
    db: AsyncSession,
    objects: Objects,
    bucket: BucketKind,
    names: Iterable[str],
    multipart: Iterable[PendingUpload] = (),
) -> None:
    """Remove objects (and unfinished multipart uploads) once this transaction commits."""
    names = list(names)
    pending = [(row.object, row.multipart_id) for row in multipart if row.multipart_id]
    if not names and not pending:
        return

    async def _drop() -> None:
        await drop_objects(objects.store, bucket, names, pending)

    db.info.setdefault("after_commit", []).append(_drop)


async def drop_objects(
    store: ObjectStore,
    bucket: BucketKind,
    names: list[str],
    pending: list[tuple[str, str]] = (),
) -> None:
    try:
        for name, multipart_id in pending:
            await store.abort_multipart(bucket, name, multipart_id)
        if names:
            await store.delete(bucket, names)
    except StorageError as exc:
        log.warning("files.orphaned bucket=%s objects=%d error=%s", bucket, len(names), exc)


async def sweep_expired(
    sessions: async_sessionmaker[AsyncSession], objects: Objects, now: datetime | None = None
) -> int:
    """Abort uploads whose ``complete_by`` has passed; returns how many. Safe to run on every
    replica at once: each row is deleted (and its reservation given back) exactly once."""
    now = now or utcnow()
    async with sessions.begin() as db:
        # SKIP LOCKED on PostgreSQL: a replica sweeping at the same time takes other rows.
        expired = (
            select(PendingUpload.id)
            .where(PendingUpload.complete_by < now)
            .order_by(PendingUpload.complete_by)
            .limit(_SWEEP_BATCH)
            .with_for_update(skip_locked=True)
        )
        rows = (
            (
                await db.execute(
                    delete(PendingUpload)
                    .execution_options(synchronize_session=False)
                    .where(PendingUpload.id.in_(expired.scalar_subquery()))
                    .returning(PendingUpload)
                )
            )
            .scalars()
            .all()
        )
        freed: defaultdict[int, int] = defaultdict(int)
        for row in rows:
            freed[row.group_id] -= row.size
        await quotas.adjust_many(db, freed)
    for kind in BucketKind:
        mine = [row for row in rows if row.bucket == kind]
        if mine:
            await drop_objects(
                objects.store,
                kind,
                [row.object for row in mine],
                [(row.object, row.multipart_id) for row in mine if row.multipart_id],
            )
    if rows:
        log.info("uploads.expired count=%d", len(rows))
    return len(rows)
