"""Group storage quotas (FEATURES F4): reserve before bytes move, settle to the stored size.

``groups.storage_used`` is the sum of the group's attachments and artifacts plus what its
uploads in flight have reserved. Every change is one atomic ``UPDATE`` of that counter, so
two coordinators (or two requests) can never both squeeze under the quota: the reservation
is ``UPDATE … SET used = used + :size WHERE used + :size <= quota``, and whoever loses the
race finds no row to update. Nothing here reads the counter and writes it back.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.errors import ErrorCode
from mitosis_sdk.units import format_size
from mitosis_server.db.models import Group
from mitosis_server.errors import DomainError


async def reserve(db: AsyncSession, group_id: int, size: int) -> None:
    """Add ``size`` bytes to the group's usage, or raise 422 ``quota_exceeded`` (no change)."""
    granted = await db.scalar(
        update(Group)
        .execution_options(synchronize_session=False)
        .where(Group.id == group_id, Group.storage_used + size <= Group.storage_quota)
        .values(storage_used=Group.storage_used + size)
        .returning(Group.id)
    )
    if granted is not None:
        return
    name, used, quota = (
        await db.execute(
            select(Group.name, Group.storage_used, Group.storage_quota).where(Group.id == group_id)
        )
    ).one()
    raise DomainError(
        ErrorCode.QUOTA_EXCEEDED,
        f"group {name!r} has {format_size(max(quota - used, 0))} of its"
        f" {format_size(quota)} storage quota left; this needs {format_size(size)}"
        " (delete files or ask an administrator to raise the quota)",
        {"group": name, "needed": size, "used": used, "quota": quota},
    )


async def adjust(db: AsyncSession, group_id: int, delta: int) -> None:
    """Add ``delta`` (negative: give back) to the group's usage, unconditionally."""
    if delta:
        await db.execute(
            update(Group)
            .execution_options(synchronize_session=False)
            .where(Group.id == group_id)
            .values(storage_used=Group.storage_used + delta)
        )


async def adjust_many(db: AsyncSession, deltas: dict[int, int]) -> None:
    """:func:`adjust` for several groups, in id order (a stable lock order on PostgreSQL)."""
    for group_id in sorted(deltas):
        await adjust(db, group_id, deltas[group_id])
