""" "Why is it pending?" (FEATURES T12): a queued task judged against every worker its group
may use, with the rule that blocks each, plus a one-line summary in the manner of Slurm's
reason codes.

Grant and tags come from :func:`scheduling.match_conditions` — the S1 rule dispatch filters
with — evaluated per worker in SQL, so explain can never disagree with the claim. The other
rows (state, drain, busy slots, dependencies, array throttle, retry backoff) mirror the
claim's remaining conditions.

Summary codes: ``Dependency``, ``BeginTime`` (retry backoff), ``ArrayThrottle``,
``NoWorker`` (no live worker could ever take it), ``Resources`` (all slots busy),
``Priority`` (a worker could take it now; it is queued behind others), ``Running``/ended.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter

from sqlalchemy import BigInteger, and_, bindparam, exists, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from mitosis_sdk.schemas import Explanation, Role, TaskExplain, TaskState, WorkerState
from mitosis_server.db.models import (
    Group,
    Task,
    TaskAttempt,
    TaskDependency,
    Worker,
    WorkerGrant,
    WorkerTag,
    utcnow,
)
from mitosis_server.services.auth import Principal
from mitosis_server.services.scheduling import IS_RUNNING, match_conditions, may_take
from mitosis_server.services.task_queries import hidden_task, require_task_role
from mitosis_server.services.workflows import met

NO_GRANT = "no_grant"
MISSING_TAGS = "missing_tags"
BUSY = "busy"
DRAINING = "draining"
OFFLINE = "offline"
DEPENDENCY = "dependency"
THROTTLE = "array_throttle"
BACKOFF = "retry_backoff"
# Rules a worker could get past without anyone changing it: it may still take the task.
TRANSIENT = {BUSY, DEPENDENCY, THROTTLE, BACKOFF}
MAX_WORKERS = 500  # rows in one answer


async def _judge(db: AsyncSession, task: Task) -> list[Explanation]:
    workers = (
        await db.execute(
            select(Worker.id, Worker.uuid, Worker.state, Worker.drain, Worker.slots)
            .where(
                Worker.state != WorkerState.STOPPED.value,
                Worker.id.in_(
                    select(WorkerGrant.worker_id).where(WorkerGrant.group_id == task.group_id)
                ),
            )
            .order_by(Worker.id)
            .limit(MAX_WORKERS)
        )
    ).all()
    matches = {}
    for w in workers:  # the S1 rule with the worker as a value, exactly as the claim binds it
        conditions = match_conditions(literal(w.id, BigInteger))
        matches[w.id] = (
            await db.execute(
                select(conditions["grant"], conditions["tags"]).where(Task.id == task.id)
            )
        ).one()
    ids = [w.id for w in workers]
    busy = (
        dict(
            (
                await db.execute(
                    select(TaskAttempt.worker_id, func.count())
                    .where(TaskAttempt.worker_id.in_(ids), TaskAttempt.ended_at.is_(None))
                    .group_by(TaskAttempt.worker_id)
                )
            ).all()
        )
        if ids
        else {}
    )
    tags: dict[int, set[str]] = {}
    for worker_id, tag in (
        await db.execute(
            select(WorkerTag.worker_id, WorkerTag.tag).where(WorkerTag.worker_id.in_(ids))
        )
        if ids
        else []
    ):
        tags.setdefault(worker_id, set()).add(tag)
    task_blocks, task_detail = await _task_blocks(db, task)
    rows = []
    for w in workers:
        blocked, details = [], []
        if w.state == WorkerState.LOST:
            blocked.append(OFFLINE)
            details.append("worker is lost (no heartbeat)")
        if w.drain or w.state == WorkerState.DRAINING:
            blocked.append(DRAINING)
            details.append("worker is draining")
        granted, tags_ok = matches[w.id]
        if not granted:
            blocked.append(NO_GRANT)
            details.append("no write grant for the task's group")
        if not tags_ok:
            missing = sorted(set(task.tags) - tags.get(w.id, set()))
            blocked.append(MISSING_TAGS)
            details.append("missing tags: " + ", ".join(missing))
        if busy.get(w.id, 0) >= w.slots:
            blocked.append(BUSY)
            details.append(f"all {w.slots} slots busy")
        blocked += task_blocks
        details += task_detail
        rows.append(
            Explanation(
                worker=w.uuid,
                state=w.state,
                blocked_by=blocked,
                detail="; ".join(details) or "could take it now",
            )
        )
    return rows


async def _task_blocks(db: AsyncSession, task: Task) -> tuple[list[str], list[str]]:
    """Rules that block the task on every worker: dependencies, throttle, backoff."""
    blocks, details = [], []
    if task.state == TaskState.PENDING:
        up = aliased(Task)
        unmet = list(
            await db.scalars(
                select(up.uuid)
                .join(TaskDependency, TaskDependency.upstream_id == up.id)
                .where(TaskDependency.task_id == task.id, ~met(TaskDependency.condition, up))
            )
        )
        blocks.append(DEPENDENCY)
        details.append("waiting for " + ", ".join(str(u) for u in unmet))
    if task.array_limit is not None:
        running = await db.scalar(
            select(func.count()).where(and_(Task.array_id == task.array_id, IS_RUNNING))
        )
        if running >= task.array_limit:
            blocks.append(THROTTLE)
            details.append(f"array throttle: {running} of {task.array_limit} running")
    if task.not_before is not None and task.not_before > utcnow():
        blocks.append(BACKOFF)
        details.append(f"retry not before {task.not_before.isoformat()}")
    return blocks, details


def summarise(
    task: Task, group: str, rows: list[Explanation], blocks: tuple[list[str], list[str]]
) -> str:
    if task.state not in (TaskState.PENDING, TaskState.READY):
        return f"{task.state.capitalize()}: the task is not queued"
    for code, name in (
        (DEPENDENCY, "Dependency"),
        (BACKOFF, "BeginTime"),
        (THROTTLE, "ArrayThrottle"),
    ):
        if code in blocks[0]:
            return f"{name}: " + blocks[1][blocks[0].index(code)]
    possible = [r for r in rows if set(r.blocked_by) <= TRANSIENT]
    if not rows:
        return f"NoWorker: no worker grants group {group!r} anything"
    if not possible:
        counts = Counter(code for r in rows for code in r.blocked_by)
        return (
            "NoWorker: no live worker could take it ("
            + ", ".join(f"{n} {code}" for code, n in counts.most_common())
            + ")"
        )
    if all(BUSY in r.blocked_by for r in possible):
        return f"Resources: all slots busy on the {len(possible)} worker(s) that could take it"
    return "Priority: a worker could take it now; it is queued behind other tasks"


async def explain_task(db: AsyncSession, principal: Principal, task_uuid: uuid.UUID) -> TaskExplain:
    task = await db.scalar(select(Task).where(Task.uuid == task_uuid))
    if task is None:
        raise hidden_task(task_uuid)
    await require_task_role(db, principal, task_uuid, task.group_id, Role.READ)
    group = await db.scalar(select(Group.name).where(Group.id == task.group_id))
    rows = await _judge(db, task) if task.state in (TaskState.PENDING, TaskState.READY) else []
    return TaskExplain(
        task=task.uuid,
        state=TaskState(task.state),
        summary=summarise(task, group, rows, await _task_blocks(db, task)),
        workers=rows,
    )


@functools.cache
def could_run_statement():
    """Whether some live worker (not stopped or lost; draining counts: it will resume) may
    take the task by the S1 rule — the claim's own condition, so the two cannot disagree."""
    live = Worker.state.not_in([WorkerState.STOPPED.value, WorkerState.LOST.value])
    return select(exists().where(live, may_take(Worker.id))).where(
        Task.uuid == bindparam("task_uuid")
    )


async def submit_warning(db: AsyncSession, task_uuid: uuid.UUID) -> str | None:
    """A warning when no live worker could ever take the task (T12), else None.

    One statement when a worker could (the usual case); the per-worker explanation only when
    none can, to word the warning."""
    if await db.scalar(could_run_statement(), {"task_uuid": task_uuid}):
        return None
    task = await db.scalar(select(Task).where(Task.uuid == task_uuid))
    if task is None or task.state not in (TaskState.PENDING, TaskState.READY):
        return None
    rows = await _judge(db, task)
    if any(set(r.blocked_by) <= TRANSIENT | {DRAINING} for r in rows):
        return None
    group = await db.scalar(select(Group.name).where(Group.id == task.group_id))
    return summarise(task, group, rows, ([], [])) + " — see `tasks explain`"
