"""Submissions derived from other tasks: arrays (T2), re-runs (T11), downstream tasks (T7).

Each builds plain specs plus the workflow columns of their rows and hands them to
:func:`submissions.submit_tasks` all-or-nothing, so one rule decides permissions, dependencies and
numbering for every way a task enters the system, and a refusal leaves nothing behind.
"""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas import (
    ArraySubmit,
    ArraySubmitted,
    Dependency,
    DependencyCondition,
    DownstreamReply,
    DownstreamSubmit,
    TaskRerun,
    TaskSpec,
    TaskSubmitted,
    parse_array,
)
from mitosis_server.db.models import Group, Task, User, Worker, WorkerGrant
from mitosis_server.errors import DomainError, forbidden, invalid
from mitosis_server.services import explain
from mitosis_server.services.auth import Principal
from mitosis_server.services.scheduling import RUN_ROLES, held_attempt
from mitosis_server.services.submissions import submit_task, submit_tasks
from mitosis_server.services.task_queries import get_task
from mitosis_server.services.wakeups import Wakeups

MAX_DOWNSTREAM = 1000


async def submit_array(
    db: AsyncSession,
    principal: Principal,
    request: ArraySubmit,
    *,
    max_attempts: int,
    wakeups: Wakeups | None = None,
) -> ArraySubmitted:
    """One task per index, sharing an array id (T2); ``%N`` is stored on every row and
    enforced by the claim. Warned like a single submit when no live worker could take it
    (T12): every index has the same spec, so the first one is judged for all."""
    try:
        indexes, throttle = parse_array(request.array)
    except ValueError as exc:
        raise invalid("array", str(exc)) from None
    array_id = uuid.uuid4()
    extra = [
        {"array_id": array_id, "array_index": index, "array_limit": throttle} for index in indexes
    ]
    results = await submit_tasks(
        db,
        principal,
        [request.spec] * len(indexes),
        all_or_nothing=True,
        max_attempts=max_attempts,
        wakeups=wakeups,
        batch=False,
        extra=extra,
    )
    return ArraySubmitted(
        array_id=array_id,
        group=results[0].group,
        count=len(results),
        throttle=throttle,
        tasks=[r.uuid for r in results],
        warning=await explain.submit_warning(db, results[0].uuid),
    )


async def rerun_task(
    db: AsyncSession,
    principal: Principal,
    task_uuid: uuid.UUID,
    rerun: TaskRerun,
    *,
    max_attempts: int,
    wakeups: Wakeups | None = None,
) -> TaskSubmitted:
    """Submit a copy of a task's spec (any state; needs ``read`` on it and ``write`` in the
    target group), with the given changes, linked by ``rerun_of`` (T11)."""
    original = await get_task(db, principal, task_uuid)
    row = (await db.execute(select(Task.id, Task.spec).where(Task.uuid == task_uuid))).one()
    fields = {
        "command": original.command,
        "group": rerun.group or original.group,
        "tags": original.tags,
        "labels": original.labels if rerun.labels is None else rerun.labels,
        "env": original.env or {},
        "timeout": original.timeout,
        "priority": original.priority,
        "terminal_output": original.terminal_output,
        "resources": original.resources,
        "depends_on": original.depends_on,
        "retries": original.retries,
        "retry_delay": row.spec.get("retry_delay"),
    }
    change = rerun.change
    if change is not None:
        for name in change.__struct_fields__:
            value = getattr(change, name)
            if value is not msgspec.UNSET:
                fields[name] = value
    try:
        spec = msgspec.convert(msgspec.to_builtins(fields), TaskSpec)
    except msgspec.ValidationError as exc:
        raise invalid("spec", str(exc)) from None
    return await submit_task(
        db,
        principal,
        spec,
        max_attempts=max_attempts,
        wakeups=wakeups,
        extra={"rerun_of_id": row.id},
    )


def parse_specs(content: str) -> list[TaskSpec]:
    """One spec or a list of specs, as JSON; ValueError with the parse error."""
    try:
        raw = msgspec.json.decode(content.encode())
    except msgspec.DecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ValueError("the file holds an empty list")
    if len(items) > MAX_DOWNSTREAM:
        raise ValueError(f"at most {MAX_DOWNSTREAM} downstream tasks per task")
    specs = []
    for index, item in enumerate(items):
        try:
            specs.append(msgspec.convert(item, TaskSpec))
        except msgspec.ValidationError as exc:
            raise ValueError(f"spec [{index}]: {exc}") from None
    return specs


async def submit_downstream(
    db: AsyncSession,
    worker_uuid: uuid.UUID,
    task_uuid: uuid.UUID,
    request: DownstreamSubmit,
    *,
    max_attempts: int,
    wakeups: Wakeups | None = None,
) -> DownstreamReply:
    """Submit what a task wrote to ``MITO_NEW_TASK`` on its behalf (T7): same creator and
    group, dependents of the writer (``afterany`` unless the spec names it otherwise).

    Fenced on the attempt the worker holds (4xx as for reports). The worker must still
    grant the group ``write``. Anything wrong with the specs is not an HTTP error: it is
    recorded on the writing task (``downstream_error``) and returned, and no task is created.
    """
    held = await held_attempt(db, worker_uuid, task_uuid, request.attempt)
    task = (
        await db.execute(
            select(Task.id, Task.group_id, Task.spec, User.id.label("uid"), User.name)
            .join(User, User.id == Task.creator_id)
            .where(Task.id == held.task_id)
        )
    ).one()
    granted = await db.scalar(
        select(WorkerGrant.role)
        .join(Worker, Worker.id == WorkerGrant.worker_id)
        .where(
            Worker.uuid == worker_uuid,
            WorkerGrant.group_id == task.group_id,
            WorkerGrant.role.in_(RUN_ROLES),
        )
    )
    if granted is None:
        raise forbidden("this worker no longer grants the task's group write")
    group = await db.scalar(select(Group.name).where(Group.id == task.group_id))
    principal = Principal(
        user_id=task.uid,
        username=task.name,
        is_admin=False,
        session_id=f"downstream:{task_uuid}",
        token_expires_at=None,
    )
    try:
        specs = parse_specs(request.content)
        for spec in specs:
            if spec.group is not None and spec.group != group:
                raise ValueError(f"downstream tasks run in the writer's group {group!r}")
            spec.group = group
            if not any(d.task == task_uuid for d in spec.depends_on):
                spec.depends_on = [
                    *spec.depends_on,
                    Dependency(task=task_uuid, condition=DependencyCondition.AFTERANY),
                ]
        results = await submit_tasks(
            db,
            principal,
            specs,
            all_or_nothing=True,
            max_attempts=max_attempts,
            wakeups=wakeups,
            extra=[{"upstream_id": task.id} for _ in specs],
        )
    except (ValueError, DomainError) as exc:
        message = f"downstream_submit_failed: {getattr(exc, 'message', None) or exc}"
        await db.execute(
            update(Task)
            .execution_options(synchronize_session=False)
            .where(Task.id == task.id)
            .values(spec={**task.spec, "downstream_error": message})
        )
        return DownstreamReply(error=message)
    return DownstreamReply(tasks=list(results))
