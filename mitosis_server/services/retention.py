"""Artifact retention (FEATURES F5): a group may have its artifacts deleted once they are N
days old. Group admins set it; members see it; the file sweeper applies it.

Expiry runs group by group with the cut-off computed here, one ``DELETE … RETURNING`` each,
so it needs no date arithmetic in SQL and two replicas sweeping at once delete (and give
back) each artifact once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mitosis_sdk.schemas import Role
from mitosis_sdk.schemas.files import RetentionInfo
from mitosis_server.db.models import Artifact, FileRetention, utcnow
from mitosis_server.services import quotas, uploads
from mitosis_server.services.auth import Principal
from mitosis_server.services.groups import require_role
from mitosis_server.services.uploads import Objects
from mitosis_server.storage.base import BucketKind


async def get_retention(db: AsyncSession, principal: Principal, group_name: str) -> RetentionInfo:
    group, _ = await require_role(db, principal, group_name, Role.READ)
    days = await db.scalar(
        select(FileRetention.artifact_days).where(FileRetention.group_id == group.id)
    )
    return RetentionInfo(group=group.name, artifact_days=days)


async def set_retention(
    db: AsyncSession, principal: Principal, group_name: str, days: int | None
) -> RetentionInfo:
    """Set (or with None remove) the group's artifact retention; needs group admin."""
    group, _ = await require_role(db, principal, group_name, Role.ADMIN)
    await db.execute(delete(FileRetention).where(FileRetention.group_id == group.id))
    if days is not None:
        db.add(FileRetention(group_id=group.id, artifact_days=days))
        await db.flush()
    return RetentionInfo(group=group.name, artifact_days=days)


async def expire_artifacts(
    sessions: async_sessionmaker[AsyncSession], objects: Objects, now: datetime | None = None
) -> int:
    """Delete the artifacts past their group's retention; returns how many."""
    now = now or utcnow()
    async with sessions.begin() as db:
        rules = (
            await db.execute(select(FileRetention.group_id, FileRetention.artifact_days))
        ).all()
        expired = []
        for group_id, days in rules:
            rows = (
                await db.execute(
                    delete(Artifact)
                    .execution_options(synchronize_session=False)
                    .where(
                        Artifact.group_id == group_id,
                        Artifact.created_at < now - timedelta(days=days),
                    )
                    .returning(Artifact.object, Artifact.size)
                )
            ).all()
            await quotas.adjust(db, group_id, -sum(row.size for row in rows))
            expired += [row.object for row in rows]
    if expired:
        await uploads.drop_objects(objects.store, BucketKind.ARTIFACTS, expired)
    return len(expired)
