"""Who may take which task, and taking it: the matching rule, the atomic claim, attempt
fencing and releasing attempts whose worker went away (FEATURES S1-S5, T4, T8).

* :func:`may_take` is the S1 rule, written once as SQL so dispatch filters with it in the
  claim statement and ``explain`` (T12) can evaluate each part per worker.
* :func:`claim_tasks` is one ``WITH claim AS MATERIALIZED (SELECT … ORDER BY priority DESC,
  id LIMIT n FOR UPDATE SKIP LOCKED) UPDATE tasks … FROM claim … RETURNING``: no task is
  taken twice, by any number of workers or coordinator replicas (S3). The caller updates
  the worker's row first, which serialises claims of one worker: its slots are never
  overbooked.
* An attempt is open while its worker holds it. Reports must name an open attempt of the
  reporting worker; closing an attempt is a conditional UPDATE, so a late report and the
  liveness monitor cannot both win, and a superseded attempt gets 409 (T8).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Update,
    Uuid,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas import (
    Assignment,
    Resource,
    ResultReport,
    Role,
    TaskPhase,
    TaskReason,
    TaskState,
)
from mitosis_sdk.units import parse_duration
from mitosis_server.db.dialects import claim_candidates, seconds_after
from mitosis_server.db.models import (
    Group,
    Task,
    TaskAttempt,
    TaskTag,
    User,
    UTCDateTime,
    Worker,
    WorkerGrant,
    WorkerTag,
)
from mitosis_server.errors import conflict, forbidden, not_found
from mitosis_server.services import publishing, workflows

RUN_ROLES = (Role.WRITE.value, Role.ADMIN.value)
# Literal (not bound) so both backends can use the partial indexes on ready/running tasks.
IS_READY = Task.state == literal_column("'ready'")
IS_RUNNING = Task.state == literal_column("'running'")

# task_attempts.outcome
OPEN = "running"
LOST = "lost"
REQUEUED = "requeued"


def match_conditions(worker_id) -> dict[str, ColumnElement[bool]]:
    """The parts of S1 for the task in ``tasks`` and the worker ``worker_id`` (a value or a
    column): a grant of ``write``/``admin`` to the task's group, and tags (the worker's tag
    set is empty or contains every tag of the task)."""
    granted = exists().where(
        WorkerGrant.worker_id == worker_id,
        WorkerGrant.group_id == Task.group_id,
        WorkerGrant.role.in_(RUN_ROLES),
    )
    worker_tags = select(WorkerTag.tag).where(WorkerTag.worker_id == worker_id)
    tags = or_(
        ~exists(worker_tags),
        ~exists().where(TaskTag.task_id == Task.id, TaskTag.tag.not_in(worker_tags)),
    )
    return {"grant": granted, "tags": tags}


def may_take(worker_id) -> ColumnElement[bool]:
    """S1: the worker may take the task (one SQL condition over ``tasks``)."""
    return and_(*match_conditions(worker_id).values())


def claimable(moment) -> ColumnElement[bool]:
    """Not held back by a retry backoff (T8)."""
    return or_(Task.not_before.is_(None), Task.not_before <= moment)


@functools.cache
def _claim_statement(throttled: bool = False) -> Update:
    """The claim, built once (it is the hot path; only its parameters change). The plain
    claim skips tasks of throttled arrays; ``throttled`` claims within one such array, whose
    head row the caller has locked (T2 ``%N``)."""
    worker = bindparam("worker_id", type_=BigInteger)
    moment = bindparam("now", type_=UTCDateTime)
    array = (
        Task.array_id == bindparam("claim_array", type_=Uuid)
        if throttled
        else Task.array_limit.is_(None)
    )
    candidates = claim_candidates(
        select(Task.id)
        .where(IS_READY, array, claimable(moment), may_take(worker))
        .order_by(Task.priority.desc(), Task.id)
        .limit(bindparam("limit", type_=Integer)),
        Task,
    )
    return (
        update(Task)
        .execution_options(synchronize_session=False)
        .where(Task.id == candidates.c.id, IS_READY)
        .values(
            state=TaskState.RUNNING.value,
            worker_id=worker,
            attempt=Task.attempt + 1,
            started_at=moment,
            deadline_at=seconds_after(moment, Task.timeout + bindparam("margin", type_=Float)),
            phase=None,
        )
        .returning(
            Task.id,
            Task.uuid,
            Task.attempt,
            Task.seq,
            Task.priority,
            Task.command,
            Task.spec,
            Task.timeout,
            Task.array_index,
            # SQLite prints RETURNING columns unqualified: each subquery names only columns
            # its own table lacks (group_id, creator_id), which resolve to the outer row.
            select(Group.name)
            .where(Group.id == Task.group_id)
            .scalar_subquery()
            .label("group_name"),
            select(User.name)
            .where(User.id == Task.creator_id)
            .scalar_subquery()
            .label("creator_name"),
            Task.upstream_id,
        )
    )


async def claim_tasks(
    db: AsyncSession, worker_id: int, limit: int, now: datetime, margin: float
) -> list[Assignment]:
    """Take up to ``limit`` ready tasks the worker may run, best first (S2), atomically (S3)."""
    if limit <= 0:
        return []
    parameters = {"worker_id": worker_id, "limit": limit, "now": now, "margin": margin}
    rows = (await db.execute(_claim_statement(), parameters)).all()
    if len(rows) < limit:
        rows += await _claim_throttled(db, worker_id, limit - len(rows), now, margin)
    if not rows:
        return []
    await db.execute(
        insert(TaskAttempt),
        [
            {
                "task_id": r.id,
                "attempt": r.attempt,
                "worker_id": worker_id,
                "outcome": OPEN,
                "started_at": now,
            }
            for r in rows
        ],
    )
    rows.sort(key=lambda r: (-r.priority, r.id))
    upstream_ids = {r.upstream_id for r in rows if r.upstream_id is not None}
    upstreams = dict(
        (await db.execute(select(Task.id, Task.uuid).where(Task.id.in_(upstream_ids)))).all()
        if upstream_ids
        else []
    )
    return [
        Assignment(
            task=r.uuid,
            attempt=r.attempt,
            group=r.group_name,
            seq=r.seq,
            creator=r.creator_name,
            command=r.command,
            env=r.spec.get("env", {}),
            timeout=r.timeout,
            terminal_output=r.spec.get("terminal_output", False),
            resources=msgspec.convert(r.spec.get("resources", []), list[Resource]),
            array_index=r.array_index,
            upstream=upstreams.get(r.upstream_id),
        )
        for r in rows
    ]


async def _claim_throttled(
    db: AsyncSession, worker_id: int, limit: int, now: datetime, margin: float
) -> list:
    """Claim from throttled arrays (``%N``): never more than N of an array running. The
    array's first task row is locked (``FOR UPDATE``, waiting) while its running tasks are
    counted and the claim runs, so concurrent claims of one array take turns on PostgreSQL;
    SQLite's single writer serialises them anyway."""
    arrays = (
        await db.execute(
            select(Task.array_id, Task.array_limit)
            .where(
                IS_READY,
                Task.array_limit.is_not(None),
                claimable(now),
                may_take(worker_id),
            )
            .group_by(Task.array_id, Task.array_limit)
            .limit(16)
        )
    ).all()
    rows: list = []
    for array_id, cap in arrays:
        if limit <= 0:
            break
        await db.execute(
            select(Task.id)
            .where(Task.array_id == array_id)
            .order_by(Task.id)
            .limit(1)
            .with_for_update()
        )
        running = await db.scalar(select(func.count()).where(Task.array_id == array_id, IS_RUNNING))
        take = min(limit, cap - running)
        if take <= 0:
            continue
        parameters = {
            "worker_id": worker_id,
            "limit": take,
            "now": now,
            "margin": margin,
            "claim_array": array_id,
        }
        claimed = (await db.execute(_claim_statement(True), parameters)).all()
        rows += claimed
        limit -= len(claimed)
    return rows


@dataclass(frozen=True)
class HeldAttempt:
    attempt_id: int
    task_id: int
    attempt: int
    task_state: str
    task_attempt: int
    phase: str | None
    timeout: float


async def held_attempt(
    db: AsyncSession, worker_uuid: uuid.UUID, task_uuid: uuid.UUID, attempt: int
) -> HeldAttempt:
    """The open attempt ``attempt`` of a task, held by this worker; else the 4xx that says
    why (404 no such task or attempt, 403 another worker's, 409 superseded or already
    ended). Every call a worker makes about a task it runs checks this first."""
    row = (
        await db.execute(
            select(
                Task.id,
                Task.state,
                Task.attempt,
                Task.timeout,
                TaskAttempt.id.label("attempt_id"),
                TaskAttempt.ended_at,
                TaskAttempt.outcome,
                TaskAttempt.phase,
                Worker.uuid.label("worker_uuid"),
            )
            .outerjoin(
                TaskAttempt,
                and_(TaskAttempt.task_id == Task.id, TaskAttempt.attempt == attempt),
            )
            .outerjoin(Worker, Worker.id == TaskAttempt.worker_id)
            .where(Task.uuid == task_uuid)
        )
    ).one_or_none()
    if row is None:
        raise not_found(f"task {task_uuid}")
    if row.attempt_id is None:
        if attempt < row.attempt:
            raise conflict(f"attempt {attempt} of task {task_uuid} was superseded")
        raise not_found(f"attempt {attempt} of task {task_uuid}")
    if row.worker_uuid != worker_uuid:
        raise forbidden(f"attempt {attempt} of task {task_uuid} is not held by this worker")
    if row.ended_at is not None:
        superseded = "superseded" if row.attempt > attempt else f"ended ({row.outcome})"
        raise conflict(f"attempt {attempt} of task {task_uuid} was {superseded}; drop it")
    return HeldAttempt(
        row.attempt_id, row.id, attempt, row.state, row.attempt, row.phase, row.timeout
    )


async def record_phase(
    db: AsyncSession,
    worker_uuid: uuid.UUID,
    task_uuid: uuid.UUID,
    attempt: int,
    phase: TaskPhase,
    now: datetime,
    margin: float,
) -> TaskState:
    """Record progress (T4; forward only) and push the overdue deadline out again."""
    held = await held_attempt(db, worker_uuid, task_uuid, attempt)
    if held.phase is not None and TaskPhase(held.phase).rank > phase.rank:
        raise conflict(f"task {task_uuid} is already past phase {phase} (at {held.phase})")
    await db.execute(
        update(TaskAttempt)
        .execution_options(synchronize_session=False)
        .where(TaskAttempt.id == held.attempt_id)
        .values(phase=phase.value)
    )
    if held.task_state == TaskState.RUNNING and held.task_attempt == attempt:
        deadline = now + timedelta(seconds=held.timeout + margin)
        await db.execute(
            update(Task)
            .execution_options(synchronize_session=False)
            .where(Task.id == held.task_id, Task.attempt == attempt, IS_RUNNING)
            .values(phase=phase.value, deadline_at=deadline)
        )
    return TaskState(held.task_state)


def outcome_of(report: ResultReport) -> tuple[TaskState, TaskReason | None]:
    """Exit code 0 and no reason completes the task; anything else fails it."""
    if report.reason is not None:
        return TaskState.FAILED, report.reason
    if report.signal is not None:
        return TaskState.FAILED, TaskReason.SIGNAL
    if report.exit_code == 0:
        return TaskState.COMPLETED, None
    return TaskState.FAILED, TaskReason.NONZERO_EXIT


async def record_result(
    db: AsyncSession,
    worker_uuid: uuid.UUID,
    task_uuid: uuid.UUID,
    report: ResultReport,
    now: datetime,
) -> tuple[TaskState, list[tuple[TaskState, int]]]:
    """Close the attempt with its result: (task state, tasks released for a requeue).

    A cancelled task stays cancelled (its exit status is recorded); ``worker_stopped`` means
    the worker killed the attempt to stop, so the task is requeued like a lost one.
    """
    held = await held_attempt(db, worker_uuid, task_uuid, report.attempt)
    if report.reason == TaskReason.WORKER_STOPPED:
        released = await release_attempts(
            db, [held.attempt_id], now, REQUEUED, TaskReason.WORKER_STOPPED, report.message
        )
        state = await db.scalar(select(Task.state).where(Task.id == held.task_id))
        return TaskState(state), released
    state, reason = outcome_of(report)
    closed = await db.execute(
        update(TaskAttempt)
        .execution_options(synchronize_session=False)
        .where(TaskAttempt.id == held.attempt_id, TaskAttempt.ended_at.is_(None))
        .values(
            ended_at=now,
            outcome=state.value,
            exit_code=report.exit_code,
            signal=report.signal,
            reason=reason,
            message=report.message,
        )
    )
    if closed.rowcount != 1:
        raise conflict(f"attempt {report.attempt} of task {task_uuid} has already ended")
    if state == TaskState.FAILED and reason in RETRY_REASONS:
        group_id = await _retry(db, held.task_id, report.attempt, now)
        if group_id is not None:
            return TaskState.READY, [(TaskState.READY, group_id)]
    finished = await db.execute(
        update(Task)
        .execution_options(synchronize_session=False)
        .where(Task.id == held.task_id, Task.attempt == report.attempt, IS_RUNNING)
        .values(
            state=state.value,
            reason=reason,
            message=report.message,
            exit_code=report.exit_code,
            signal=report.signal,
            finished_at=now,
            deadline_at=None,
        )
    )
    if finished.rowcount == 1:
        groups, _ = await workflows.settle(db, now, upstream_ids=[held.task_id])
        return state, [(TaskState.READY, group_id) for group_id in groups]
    # Cancelled while running: keep the verdict, record how the process ended.
    await db.execute(
        update(Task)
        .execution_options(synchronize_session=False)
        .where(Task.id == held.task_id, Task.attempt == report.attempt)
        .values(exit_code=report.exit_code, signal=report.signal, deadline_at=None)
    )
    return TaskState(held.task_state), []


RETRY_REASONS = (TaskReason.NONZERO_EXIT, TaskReason.TIMEOUT, TaskReason.SIGNAL)
MAX_BACKOFF = 24 * 3600.0


async def _retry(db: AsyncSession, task_id: int, attempt: int, now: datetime) -> int | None:
    """Requeue a task whose attempt failed while it has retries left (spec ``retries``,
    T8), not before ``retry_delay * 2**(n-1)`` for its n-th retry; its group id, or None."""
    task = (await db.execute(select(Task.retries, Task.spec).where(Task.id == task_id))).one()
    if not task.retries:
        return None
    used = await db.scalar(
        select(func.count()).where(
            TaskAttempt.task_id == task_id,
            TaskAttempt.outcome == TaskState.FAILED.value,
            TaskAttempt.reason.in_([r.value for r in RETRY_REASONS]),
        )
    )
    if used > task.retries:
        return None
    delay = task.spec.get("retry_delay")
    seconds = min(parse_duration(delay) * 2 ** (used - 1), MAX_BACKOFF) if delay else 0.0
    return await db.scalar(
        update(Task)
        .execution_options(synchronize_session=False)
        .where(Task.id == task_id, Task.attempt == attempt, IS_RUNNING)
        .values(
            state=TaskState.READY.value,
            worker_id=None,
            phase=None,
            deadline_at=None,
            not_before=now + timedelta(seconds=seconds) if seconds else None,
        )
        .returning(Task.group_id)
    )


async def release_attempts(
    db: AsyncSession,
    attempt_ids: list[int],
    now: datetime,
    outcome: str,
    reason: TaskReason,
    message: str | None = None,
) -> list[tuple[TaskState, int]]:
    """End open attempts whose worker went away (lost, overdue, stopping): the task goes back
    to ``ready`` while attempts are left, else fails with ``worker_lost`` (T8). Attempts that
    already ended (a report or another coordinator won the race) are skipped, and so are
    tasks no longer running that attempt (cancelled). Returns (new state, group id) of each
    released task; wake the workers of requeued groups after commit."""
    released: list[tuple[TaskState, int]] = []
    for attempt_id in attempt_ids:
        closed = (
            await db.execute(
                update(TaskAttempt)
                .execution_options(synchronize_session=False)
                .where(TaskAttempt.id == attempt_id, TaskAttempt.ended_at.is_(None))
                .values(ended_at=now, outcome=outcome, reason=reason.value, message=message)
                .returning(TaskAttempt.task_id, TaskAttempt.attempt)
            )
        ).one_or_none()
        if closed is None:
            continue
        retry = Task.attempt < Task.max_attempts
        row = (
            await db.execute(
                update(Task)
                .execution_options(synchronize_session=False)
                .where(Task.id == closed.task_id, Task.attempt == closed.attempt, IS_RUNNING)
                .values(
                    state=case((retry, TaskState.READY.value), else_=TaskState.FAILED.value),
                    reason=case((retry, None), else_=TaskReason.WORKER_LOST.value),
                    message=case(
                        (retry, None),
                        else_=f"no attempt left after attempt {closed.attempt} ended: "
                        f"{message or reason.value}",
                    ),
                    finished_at=case((retry, None), else_=literal(now, UTCDateTime)),
                    worker_id=case((retry, None), else_=Task.worker_id),
                    phase=None,
                    deadline_at=None,
                )
                .returning(Task.id, Task.state, Task.group_id)
            )
        ).one_or_none()
        if row is not None:
            publishing.note_tasks(db, [row.id])
            released.append((TaskState(row.state), row.group_id))
            if row.state == TaskState.FAILED:
                groups, _ = await workflows.settle(db, now, upstream_ids=[row.id])
                released += [(TaskState.READY, group_id) for group_id in groups]
    return released


async def requeued_groups(db: AsyncSession, released: list[tuple[TaskState, int]]) -> list[str]:
    """Names of the groups that got tasks back into the queue (to wake their workers)."""
    ids = {group_id for state, group_id in released if state == TaskState.READY}
    if not ids:
        return []
    return list(await db.scalars(select(Group.name).where(Group.id.in_(ids))))
