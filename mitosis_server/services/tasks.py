"""Cancelling and changing tasks (FEATURES T9, T10); submitting is in ``submissions``, reads
in ``task_queries``.

Cancel works on pending, ready and running tasks: a running task is ``cancelled`` at once
(the user's verdict stands) while its attempt stays open until the worker, told through its
next heartbeat or fetch reply, reports the process gone.
"""

from __future__ import annotations

import shlex
import uuid

import msgspec
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas import (
    CancelReply,
    Role,
    TaskChange,
    TaskFilter,
    TaskInfo,
    TaskReason,
    TaskRef,
    TaskState,
)
from mitosis_sdk.schemas.limits import timeout_seconds
from mitosis_server.db.models import Group, Task, TaskLabel, TaskTag, Worker, utcnow
from mitosis_server.errors import conflict
from mitosis_server.services import publishing, workflows
from mitosis_server.services.auth import Principal
from mitosis_server.services.task_queries import (
    filter_conditions,
    get_task,
    hidden_task,
    require_task_role,
)
from mitosis_server.services.wakeups import Wakeups, notify_after_commit

ACTIVE_STATES = [TaskState.PENDING.value, TaskState.READY.value, TaskState.RUNNING.value]
QUEUED_STATES = [TaskState.PENDING.value, TaskState.READY.value]


async def _cancel_where(
    db: AsyncSession, principal: Principal, conditions: list, wakeups: Wakeups | None
) -> list[uuid.UUID]:
    now = utcnow()
    rows = (
        await db.execute(
            update(Task)
            .execution_options(synchronize_session=False)
            .where(*conditions, Task.state.in_(ACTIVE_STATES))
            .values(
                state=TaskState.CANCELLED.value,
                reason=TaskReason.CANCELLED.value,
                message=f"cancelled by {principal.username}",
                cancelled_by_id=principal.user_id,
                finished_at=now,
                deadline_at=None,
            )
            .returning(
                Task.id,
                Task.uuid,
                select(Worker.uuid)
                .where(Worker.id == Task.worker_id)
                .scalar_subquery()
                .label("worker_uuid"),
            )
        )
    ).all()
    # Wake the fetches parked by workers running these, so they hear of it at once.
    running = {r.worker_uuid for r in rows if r.worker_uuid is not None}
    # Dependents (T6): afterok ones fail (and theirs), afterany/afternotok ones may start.
    upstreams = await workflows.with_dependents(db, [r.id for r in rows])
    groups, changed = await workflows.settle(db, now, upstream_ids=upstreams)
    groups = await workflows.group_names(db, groups)
    notify_after_commit(db, wakeups, workers=running, groups=groups)
    changed_uuids = await workflows.uuids_of(db, changed)
    await publishing.tasks_changed(db, wakeups, [r.uuid for r in rows] + changed_uuids)
    return [r.uuid for r in rows]


async def cancel_tasks(
    db: AsyncSession,
    principal: Principal,
    uuids: list[uuid.UUID],
    task_filter: TaskFilter | None,
    wakeups: Wakeups | None = None,
) -> CancelReply:
    """Cancel by UUID list (all must exist and be writable, else nothing changes) or by
    filter (within the groups where the caller has ``write``). Finished tasks are reported
    as unchanged."""
    if task_filter is not None:
        conditions = await filter_conditions(db, principal, task_filter, Role.WRITE)
        return CancelReply(
            cancelled=await _cancel_where(db, principal, conditions, wakeups), unchanged=[]
        )
    wanted = list(dict.fromkeys(uuids))
    rows = {
        r.uuid: r
        for r in await db.execute(
            select(Task.id, Task.uuid, Task.state, Task.group_id).where(Task.uuid.in_(wanted))
        )
    }
    checked: set[int] = set()
    for task_uuid in wanted:
        row = rows.get(task_uuid)
        if row is None:
            raise hidden_task(task_uuid)
        if row.group_id not in checked:
            await require_task_role(db, principal, task_uuid, row.group_id, Role.WRITE)
            checked.add(row.group_id)
    active = [rows[u].id for u in wanted if rows[u].state in ACTIVE_STATES]
    cancelled = await _cancel_where(db, principal, [Task.id.in_(active)], wakeups) if active else []
    done = set(cancelled)
    unchanged = [TaskRef(uuid=u, state=TaskState(rows[u].state)) for u in wanted if u not in done]
    return CancelReply(cancelled=cancelled, unchanged=unchanged)


async def cancel_task(
    db: AsyncSession, principal: Principal, task_uuid: uuid.UUID, wakeups: Wakeups | None = None
) -> TaskInfo:
    reply = await cancel_tasks(db, principal, [task_uuid], None, wakeups)
    if reply.unchanged:
        raise conflict(f"task {task_uuid} is already {reply.unchanged[0].state}")
    return await get_task(db, principal, task_uuid)


async def _writable_task(
    db: AsyncSession, principal: Principal, task_uuid: uuid.UUID, *, lock: bool = False
) -> Task:
    statement = select(Task).where(Task.uuid == task_uuid)
    # Lock the row: a concurrent claim skips it (SKIP LOCKED) or we wait and see it running.
    task = await db.scalar(statement.with_for_update() if lock else statement)
    if task is None:
        raise hidden_task(task_uuid)
    await require_task_role(db, principal, task_uuid, task.group_id, Role.WRITE)
    return task


async def _replace_values(db: AsyncSession, table, column: str, task_id: int, values) -> None:
    await db.execute(delete(table).where(table.task_id == task_id))
    if values:
        await db.execute(insert(table), [{"task_id": task_id, column: v} for v in values])


async def change_task(
    db: AsyncSession,
    principal: Principal,
    task_uuid: uuid.UUID,
    change: TaskChange,
    wakeups: Wakeups | None = None,
) -> TaskInfo:
    """Edit a pending or ready task (T10); a task that started meanwhile is a 409."""
    task = await _writable_task(db, principal, task_uuid, lock=True)
    if task.state not in QUEUED_STATES:
        raise conflict(f"task {task_uuid} is {task.state}; only queued tasks can be changed")
    spec = dict(task.spec)
    if change.command is not msgspec.UNSET:
        task.command = change.command
        task.command_line = shlex.join(change.command)
    if change.env is not msgspec.UNSET:
        spec["env"] = change.env
    if change.resources is not msgspec.UNSET:
        spec["resources"] = msgspec.to_builtins(change.resources)
    if change.terminal_output is not msgspec.UNSET:
        spec["terminal_output"] = change.terminal_output
    if change.timeout is not msgspec.UNSET:
        task.timeout = timeout_seconds(change.timeout)
    if change.priority is not msgspec.UNSET:
        task.priority = change.priority
    if change.tags is not msgspec.UNSET:
        task.tags = change.tags
        await _replace_values(db, TaskTag, "tag", task.id, change.tags)
    task.spec = spec
    await db.flush()
    group = await db.scalar(select(Group.name).where(Group.id == task.group_id))
    notify_after_commit(db, wakeups, groups=[group])
    return await get_task(db, principal, task_uuid)


async def replace_labels(
    db: AsyncSession, principal: Principal, task_uuid: uuid.UUID, labels: list[str]
) -> TaskInfo:
    """Replace the labels of any task, finished ones too (T10)."""
    task = await _writable_task(db, principal, task_uuid)
    task.labels = labels
    await _replace_values(db, TaskLabel, "label", task.id, labels)
    await db.flush()
    return await get_task(db, principal, task_uuid)
