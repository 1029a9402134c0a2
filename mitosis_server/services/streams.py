"""What the live streams may carry to whom, and the worker's way into a task's live log.

* :func:`readable_groups` — the groups whose events a caller may receive (None: all, for
  Mitosis admins); the event stream filters on it, so a member of X never sees Y's events.
* :func:`readable_task` — a task's uuid, group and state, or 404 when the caller cannot see
  it (the same answer ``tasks get`` gives: a non-member learns nothing).
* :func:`ship_lines` — append a worker's batch to the task's log on the bus as one chunk,
  fenced like every other worker call (only the worker holding that open attempt;
  403/404/409 otherwise).

The streaming itself (queues, heartbeats, dropping slow clients) is HTTP shape and lives in
api/events.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas import Role
from mitosis_sdk.schemas.events import LogBatch
from mitosis_server.db.models import Group, Membership, Task
from mitosis_server.services.auth import Principal
from mitosis_server.services.groups import require_role
from mitosis_server.services.publishing import TERMINAL
from mitosis_server.services.scheduling import held_attempt
from mitosis_server.services.task_queries import group_role, hidden_task


@dataclass(frozen=True, slots=True)
class ReadableTask:
    uuid: uuid.UUID
    group: str
    state: str

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL


async def readable_groups(
    db: AsyncSession, principal: Principal, only: list[str] | None = None
) -> set[str] | None:
    """Groups the caller may watch (None means every group); ``only`` narrows it, and a
    group in ``only`` the caller cannot see is a 404 like everywhere else."""
    if only:
        for name in only:
            await require_role(db, principal, name, Role.READ)
        return set(only)
    if principal.is_admin:
        return None
    names = await db.scalars(
        select(Group.name)
        .join(Membership, Membership.group_id == Group.id)
        .where(Membership.user_id == principal.user_id)
    )
    return set(names)


async def readable_task(
    db: AsyncSession, principal: Principal, task_uuid: uuid.UUID
) -> ReadableTask:
    row = (
        await db.execute(
            select(Task.uuid, Task.state, Task.group_id, Group.name)
            .join(Group, Group.id == Task.group_id)
            .where(Task.uuid == task_uuid)
        )
    ).one_or_none()
    if row is None or await group_role(db, principal, row.group_id) is None:
        raise hidden_task(task_uuid)
    return ReadableTask(row.uuid, row.name, row.state)


async def task_state(db: AsyncSession, task_uuid: uuid.UUID) -> str | None:
    return await db.scalar(select(Task.state).where(Task.uuid == task_uuid))


async def ship_lines(
    db: AsyncSession, bus, worker_uuid: uuid.UUID, task_uuid: uuid.UUID, batch: LogBatch
) -> bool:
    """Append the batch as one chunk; False when the bus did not store it (down, or a batch
    it already has: the worker's retry after a lost reply)."""
    await held_attempt(db, worker_uuid, task_uuid, batch.attempt)
    cursor = await bus.append_log(str(task_uuid), batch.attempt, batch.first_line, batch.lines)
    return cursor is not None
