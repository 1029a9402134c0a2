"""Who may take which task, attempt fencing, and releasing attempts whose worker went away
(FEATURES S1, S5, T8). Taking tasks is ``claims``; recording reports is ``reports``.

* :func:`may_take` is the S1 rule, written once as SQL so dispatch filters with it in the
  claim statement and ``explain`` (T12) can evaluate each part per worker.
* An attempt is open while its worker holds it. Reports must name an open attempt of the
  reporting worker (:func:`held_attempt`); closing an attempt is a conditional UPDATE, so a
  late report and the liveness monitor cannot both win, and a superseded attempt gets 409.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    Uuid,
    and_,
    bindparam,
    case,
    exists,
    literal,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas import Role, TaskPhase, TaskReason, TaskState
from mitosis_server.db.models import (
    Group,
    Task,
    TaskAttempt,
    TaskTag,
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
    set is empty or contains every tag of the task).

    Correlated explicitly: ``tasks`` (and ``workers``, when ``worker_id`` is its column) come
    from the enclosing statement however deep these subqueries sit. Auto-correlation only
    looks one level up, and silently joined every task of the database in instead."""
    granted = (
        exists()
        .where(
            WorkerGrant.worker_id == worker_id,
            WorkerGrant.group_id == Task.group_id,
            WorkerGrant.role.in_(RUN_ROLES),
        )
        .correlate_except(WorkerGrant)
    )
    worker_tags = (
        select(WorkerTag.tag).where(WorkerTag.worker_id == worker_id).correlate_except(WorkerTag)
    )
    tags = or_(
        ~exists(worker_tags),
        ~exists()
        .where(TaskTag.task_id == Task.id, TaskTag.tag.not_in(worker_tags))
        .correlate_except(TaskTag),
    )
    return {"grant": granted, "tags": tags}


def may_take(worker_id) -> ColumnElement[bool]:
    """S1: the worker may take the task (one SQL condition over ``tasks``)."""
    return and_(*match_conditions(worker_id).values())


def claimable(moment) -> ColumnElement[bool]:
    """Not held back by a retry backoff (T8)."""
    return or_(Task.not_before.is_(None), Task.not_before <= moment)


@dataclass(frozen=True)
class HeldAttempt:
    attempt_id: int
    task_id: int
    attempt: int
    task_state: str
    task_attempt: int
    phase: str | None
    timeout: float


@functools.cache
def _attempt_statement() -> Select:
    """A task and one attempt of it, with the worker holding that attempt."""
    return (
        select(
            Task.id,
            Task.state,
            Task.attempt,
            Task.timeout,
            TaskAttempt.id.label("attempt_id"),
            TaskAttempt.ended_at,
            TaskAttempt.outcome,
            TaskAttempt.phase,
            TaskAttempt.exit_code,
            TaskAttempt.signal,
            TaskAttempt.reason,
            Worker.uuid.label("worker_uuid"),
        )
        .outerjoin(
            TaskAttempt,
            and_(
                TaskAttempt.task_id == Task.id,
                TaskAttempt.attempt == bindparam("attempt", type_=Integer),
            ),
        )
        .outerjoin(Worker, Worker.id == TaskAttempt.worker_id)
        .where(Task.uuid == bindparam("task", type_=Uuid))
    )


async def attempt_row(db: AsyncSession, task_uuid: uuid.UUID, attempt: int) -> Row | None:
    """The row of :func:`_attempt_statement`; None for an unknown task."""
    connection = await db.connection()
    result = await connection.execute(_attempt_statement(), {"task": task_uuid, "attempt": attempt})
    return result.one_or_none()


def check_held(
    row: Row | None, worker_uuid: uuid.UUID, task_uuid: uuid.UUID, attempt: int
) -> HeldAttempt:
    """The held attempt in ``row`` (see :func:`held_attempt`), or the 4xx that says why not."""
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


async def held_attempt(
    db: AsyncSession, worker_uuid: uuid.UUID, task_uuid: uuid.UUID, attempt: int
) -> HeldAttempt:
    """The open attempt ``attempt`` of a task, held by this worker; else the 4xx that says
    why (404 no such task or attempt, 403 another worker's, 409 superseded or already
    ended). Every call a worker makes about a task it runs checks this first."""
    row = await attempt_row(db, task_uuid, attempt)
    return check_held(row, worker_uuid, task_uuid, attempt)


async def release_attempts(
    db: AsyncSession,
    attempt_ids: list[int],
    now: datetime,
    outcome: str,
    reason: TaskReason,
    message: str | None = None,
    *,
    unstarted: bool = False,
) -> list[tuple[TaskState, int]]:
    """End open attempts whose worker went away (lost, overdue, stopping): the task goes back
    to ``ready`` while attempts are left, else fails with ``worker_lost`` (T8). Attempts that
    already ended (a report or another coordinator won the race) are skipped, and so are
    tasks no longer running that attempt (cancelled). Returns (new state, group id) of each
    released task; wake the workers of requeued groups after commit.

    ``unstarted``: the worker hands back attempts it held ahead and never started. They do
    not count: the task goes back to ``ready`` with its budget grown by the one attempt."""
    released: list[tuple[TaskState, int]] = []
    ended = {"ended_at": now, "outcome": outcome, "reason": reason.value, "message": message}
    if unstarted:  # how far it got, for its history
        ended["phase"] = TaskPhase.WAITING.value
    for attempt_id in attempt_ids:
        closed = (
            await db.execute(
                update(TaskAttempt)
                .execution_options(synchronize_session=False)
                .where(TaskAttempt.id == attempt_id, TaskAttempt.ended_at.is_(None))
                .values(**ended)
                .returning(TaskAttempt.task_id, TaskAttempt.attempt)
            )
        ).one_or_none()
        if closed is None:
            continue
        retry = true() if unstarted else Task.attempt < Task.max_attempts
        row = (
            await db.execute(
                update(Task)
                .execution_options(synchronize_session=False)
                .where(Task.id == closed.task_id, Task.attempt == closed.attempt, IS_RUNNING)
                .values(
                    max_attempts=Task.max_attempts + int(unstarted),
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
