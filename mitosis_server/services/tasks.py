"""Submitting and changing tasks (FEATURES T1, T2, T9, T10); reads are in ``task_queries``.

Submit needs ``write`` in the target group (default: the caller's personal group). A batch
is decided spec by spec, or all-or-nothing; either way every accepted task is inserted in one
transaction with its per-group number taken from ``groups.task_seq``. Cancel works on
pending, ready and running tasks: a running task is ``cancelled`` at once (the user's verdict
stands) while its attempt stays open until the worker, told through its next heartbeat or
fetch reply, reports the process gone.
"""

from __future__ import annotations

import shlex
import uuid
from collections import defaultdict

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
    TaskSpec,
    TaskState,
    TaskSubmitted,
)
from mitosis_sdk.schemas.limits import timeout_seconds
from mitosis_server.db.models import Group, Task, TaskLabel, TaskTag, Worker, utcnow
from mitosis_server.errors import DomainError, conflict
from mitosis_server.services import explain, publishing, workflows
from mitosis_server.services.auth import Principal
from mitosis_server.services.groups import require_role
from mitosis_server.services.task_queries import (
    filter_conditions,
    get_task,
    hidden_task,
    require_task_role,
)
from mitosis_server.services.wakeups import Wakeups, notify_after_commit

ACTIVE_STATES = [TaskState.PENDING.value, TaskState.READY.value, TaskState.RUNNING.value]
QUEUED_STATES = [TaskState.PENDING.value, TaskState.READY.value]


def _in_batch(index: int, error: DomainError) -> DomainError:
    details = {**(error.details or {}), "index": index}
    return DomainError(error.code, f"tasks[{index}]: {error.message}", details)


def _row(spec: TaskSpec, principal: Principal, group_id: int, seq: int, attempts: int, now):
    return {
        "uuid": uuid.uuid4(),
        "group_id": group_id,
        "seq": seq,
        "creator_id": principal.user_id,
        "state": (TaskState.PENDING if spec.depends_on else TaskState.READY).value,
        "priority": spec.priority,
        "command": spec.command,
        "command_line": shlex.join(spec.command),
        "tags": spec.tags,
        "labels": spec.labels,
        "spec": {
            "env": spec.env,
            "resources": msgspec.to_builtins(spec.resources),
            "terminal_output": spec.terminal_output,
            "depends_on": msgspec.to_builtins(spec.depends_on),
            "retry_delay": spec.retry_delay,
        },
        "timeout": spec.timeout_seconds,
        "retries": spec.retries,
        # Lost-worker requeues (T8) keep their own budget on top of the failure retries.
        "max_attempts": attempts + spec.retries,
        "attempt": 0,
        "created_at": now,
    }


async def submit_tasks(
    db: AsyncSession,
    principal: Principal,
    specs: list[TaskSpec],
    *,
    all_or_nothing: bool,
    max_attempts: int,
    wakeups: Wakeups | None = None,
    batch: bool = True,
    extra: list[dict] | None = None,
) -> list[TaskSubmitted | DomainError]:
    """Insert the acceptable specs; the answer per spec is the new task or its error.

    With ``all_or_nothing`` the first error is raised instead and nothing is inserted.
    ``extra`` (one dict per spec) sets workflow columns: array id/index/limit, upstream,
    rerun_of. Tasks with dependencies start ``pending`` and are settled at once (T6).
    """
    found = await workflows.check_dependencies(db, principal, specs)
    groups: dict[str, Group | DomainError] = {}
    for name in {spec.group or principal.username for spec in specs}:
        try:
            groups[name] = (await require_role(db, principal, name, Role.WRITE))[0]
        except DomainError as exc:
            groups[name] = exc
    results: list[TaskSubmitted | DomainError | None] = [None] * len(specs)
    accepted: dict[int, list[int]] = defaultdict(list)
    for index, spec in enumerate(specs):
        group = groups[spec.group or principal.username]
        error = group if isinstance(group, DomainError) else workflows.dependency_error(spec, found)
        if error is not None:
            error = _in_batch(index, error) if batch else error
            if all_or_nothing:
                raise error
            results[index] = error
            continue
        accepted[group.id].append(index)
    if not accepted:
        return results
    now = utcnow()
    rows: list[tuple[int, str, dict]] = []
    names = {g.id: g.name for g in groups.values() if isinstance(g, Group)}
    for group_id, indexes in accepted.items():
        last = await db.scalar(
            update(Group)
            .execution_options(synchronize_session=False)
            .where(Group.id == group_id)
            .values(task_seq=Group.task_seq + len(indexes))
            .returning(Group.task_seq)
        )
        first = last - len(indexes) + 1
        for offset, index in enumerate(indexes):
            row = _row(specs[index], principal, group_id, first + offset, max_attempts, now)
            if extra is not None:
                row.update(extra[index])
            rows.append((index, names[group_id], row))
    rows.sort(key=lambda item: item[0])  # ids in submission order: FIFO among equals (S2)
    ids = (
        await db.execute(
            insert(Task).returning(Task.id, sort_by_parameter_order=True),
            [row for _, _, row in rows],
        )
    ).scalars()
    tags, labels, pending = [], [], []
    for task_id, (index, group_name, row) in zip(ids, rows, strict=True):
        tags += [{"task_id": task_id, "tag": tag} for tag in row["tags"]]
        labels += [{"task_id": task_id, "label": label} for label in row["labels"]]
        if row["state"] == TaskState.PENDING:
            pending.append((task_id, index))
        results[index] = TaskSubmitted(
            uuid=row["uuid"], group=group_name, seq=row["seq"], state=TaskState(row["state"])
        )
    if tags:
        await db.execute(insert(TaskTag), tags)
    if labels:
        await db.execute(insert(TaskLabel), labels)
    if pending:
        await workflows.add_dependencies(db, [(i, specs[x]) for i, x in pending], found)
        await workflows.settle(db, now, task_ids=[i for i, _ in pending])
        ids_pending = [i for i, _ in pending]
        states = dict(
            (await db.execute(select(Task.id, Task.state).where(Task.id.in_(ids_pending)))).all()
        )
        for task_id, index in pending:
            results[index].state = TaskState(states[task_id])
    notify_after_commit(db, wakeups, groups={name for _, name, _ in rows})
    await publishing.tasks_changed(db, wakeups, [row["uuid"] for _, _, row in rows])
    return results


async def submit_task(
    db: AsyncSession,
    principal: Principal,
    spec: TaskSpec,
    *,
    max_attempts: int,
    wakeups: Wakeups | None = None,
) -> TaskSubmitted:
    (result,) = await submit_tasks(
        db,
        principal,
        [spec],
        all_or_nothing=True,
        max_attempts=max_attempts,
        wakeups=wakeups,
        batch=False,
    )
    result.warning = await explain.submit_warning(db, result.uuid)
    return result


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
    groups, changed = await workflows.settle(db, now, upstream_ids=[r.id for r in rows])
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
