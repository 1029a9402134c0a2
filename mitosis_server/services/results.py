"""How attempts end (FEATURES T3, T8): the results of one report or of a whole fetch.

The hot path is optimistic: the conditional UPDATE that closes the attempt comes first with
the fence in its WHERE clause, and its RETURNING gives what the task's UPDATE, the event and
the dependency check need, so a result costs two statements (one on PostgreSQL, where the
task's UPDATE reads the attempt's RETURNING in the same statement, for every result of a
fetch at once). Only when the UPDATE matches nothing is the attempt read to say why (404,
403, 409). A result sent again after its reply was lost -- the attempt already ended by this
worker with this very result -- is answered like the first time and changes nothing, so a
worker may retry a report safely. A failed attempt with retries left is requeued after its
backoff; ``worker_stopped`` (the worker killed it to stop) is requeued like a lost one.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    Row,
    Select,
    String,
    Update,
    Uuid,
    bindparam,
    column,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas import (
    ResultReport,
    TaskPhase,
    TaskReason,
    TaskState,
)
from mitosis_sdk.schemas.events import EventKind
from mitosis_sdk.units import parse_duration
from mitosis_server.db import driver
from mitosis_server.db.models import (
    Task,
    TaskAttempt,
)
from mitosis_server.errors import DomainError, conflict
from mitosis_server.services import publishing, workflows
from mitosis_server.services.attempt_fence import (
    NOW,
    one,
    open_attempt,
    publish_row,
    refusal,
    task_update,
)
from mitosis_server.services.scheduling import (
    IS_RUNNING,
    REQUEUED,
    attempt_row,
    check_held,
    release_attempts,
)
from mitosis_server.services.wakeups import Wakeups

RETRY_REASONS = (TaskReason.NONZERO_EXIT, TaskReason.TIMEOUT, TaskReason.SIGNAL)


MAX_BACKOFF = 24 * 3600.0

# What a result sets, by parameter name (``b_attempt``: ``attempt`` is a column's own name).
RESULT_VALUES = {
    "task": Uuid,
    "b_attempt": Integer,
    "outcome": String,
    "exit_code": Integer,
    "signal": Integer,
    "reason": String,
    "message": String,
    "phase": String,  # the last phase its attempt reached (none from older workers)
}


def _result_values(together: bool) -> dict[str, Any]:
    """A result's values as its statements read them: bound parameters, or (``together``,
    PostgreSQL) the columns of ``unnest`` over one array per value, a row per result."""
    if not together:
        return {name: bindparam(name, type_=kind) for name, kind in RESULT_VALUES.items()}
    arrays = [bindparam(f"r_{name}", type_=ARRAY(kind)) for name, kind in RESULT_VALUES.items()]
    columns = [column(name, kind) for name, kind in RESULT_VALUES.items()]
    rows = func.unnest(*arrays).table_valued(*columns).render_derived("result")
    return {name: rows.c[name] for name in RESULT_VALUES}


def _close_attempt(value: dict[str, Any]) -> Update:
    """Close the attempt a result names, if it is open and held by the worker; return its
    task id and the result's values (a later statement ends the task with them)."""
    return (
        update(TaskAttempt)
        .where(*open_attempt(value["task"], value["b_attempt"]))
        .values(
            ended_at=NOW,
            phase=func.coalesce(value["phase"], TaskAttempt.phase),
            **{c: value[c] for c in ("outcome", "exit_code", "signal", "reason", "message")},
        )
        .returning(TaskAttempt.task_id, *(value[name].label(name) for name in RESULT_VALUES))
    )


def _finish_task(task: Any, value: dict[str, Any]) -> Update:
    """End the task ``task`` identifies with the result's values, if it still runs that
    attempt (not cancelled or superseded meanwhile)."""
    return task_update(
        task,
        Task.attempt == value["b_attempt"],
        IS_RUNNING,
        phase=func.coalesce(value["phase"], Task.phase),
        state=value["outcome"],
        reason=value["reason"],
        message=value["message"],
        exit_code=value["exit_code"],
        signal=value["signal"],
        finished_at=NOW,
        deadline_at=None,
    )


@functools.cache
def _result_statements(together: bool) -> tuple[Update, Update]:
    """Close the attempt with its result, then end the task; ``together``: for every
    result of a fetch at once."""
    value = _result_values(together)
    return _close_attempt(value), _finish_task(Task.uuid == value["task"], value)


@functools.cache
def _close_and_finish_statement() -> Select:
    """PostgreSQL, for results that cannot lead to a retry: both result statements as one,
    the finish reading what the close returned. A row per attempt closed (``closed_task``,
    ``closed_attempt``, ``closed_task_id``) with, where the task still ran that attempt,
    the task's new row beside it (NULLs where it did not: cancelled meanwhile)."""
    closed = _close_attempt(_result_values(True)).cte("closed")
    value = {name: closed.c[name] for name in RESULT_VALUES}
    finished = _finish_task(Task.id == closed.c.task_id, value).cte("finished")
    return select(
        closed.c.task_id.label("closed_task_id"),
        closed.c.task.label("closed_task"),
        closed.c.b_attempt.label("closed_attempt"),
        *finished.c,
    ).select_from(closed.outerjoin(finished, finished.c.id == closed.c.task_id))


def outcome_of(report: ResultReport) -> tuple[TaskState, TaskReason | None]:
    """Exit code 0 and no reason completes the task; anything else fails it."""
    if report.reason is not None:
        return TaskState.FAILED, report.reason
    if report.signal is not None:
        return TaskState.FAILED, TaskReason.SIGNAL
    if report.exit_code == 0:
        return TaskState.COMPLETED, None
    return TaskState.FAILED, TaskReason.NONZERO_EXIT


def _already_recorded(row: Row | None, worker_uuid: uuid.UUID, report: ResultReport) -> bool:
    """Did this worker already end this attempt with this very result (a retried report)?"""
    if row is None or row.attempt_id is None or row.ended_at is None:
        return False
    if row.worker_uuid != worker_uuid:
        return False
    if report.reason == TaskReason.WORKER_STOPPED:
        return (row.outcome, row.reason) == (REQUEUED, TaskReason.WORKER_STOPPED.value)
    state, reason = outcome_of(report)
    recorded = (row.outcome, row.exit_code, row.signal, row.reason)
    return recorded == (state.value, report.exit_code, report.signal, reason and reason.value)


Released = list[tuple[TaskState, int]]  # (state, group id) of tasks back in the queue


@dataclass(frozen=True)
class Recorded:
    states: list[TaskState | DomainError]  # per result, in order: the task's state or a refusal
    released: Released


@dataclass(frozen=True)
class _Ending:
    """A result on its way in: the report and what it makes of the task."""

    task: uuid.UUID
    report: ResultReport
    state: TaskState
    reason: str | None

    @classmethod
    def of(cls, task: uuid.UUID, report: ResultReport) -> _Ending:
        state, reason = outcome_of(report)
        return cls(task, report, state, reason.value if reason else None)

    @property
    def key(self) -> tuple[uuid.UUID, int]:
        return (self.task, self.report.attempt)

    @property
    def may_retry(self) -> bool:
        return self.state == TaskState.FAILED and self.reason in RETRY_REASONS

    def values(self) -> dict[str, Any]:
        report = self.report
        return {
            "task": self.task,
            "b_attempt": report.attempt,
            "outcome": self.state.value,
            "exit_code": report.exit_code,
            "signal": report.signal,
            "reason": self.reason,
            "message": report.message,
            "phase": report.phase and report.phase.value,
        }


async def record_results(
    db: AsyncSession,
    worker_uuid: uuid.UUID,
    results: list[tuple[uuid.UUID, ResultReport]],
    now: datetime,
    wakeups: Wakeups | None,
) -> Recorded:
    """Close the attempts with their results and move the tasks on, publishing the changes.

    A cancelled task stays cancelled (its exit status is recorded); ``worker_stopped`` means
    the worker killed the attempt to stop, so the task is requeued like a lost one. The
    common case -- open attempts, tasks that end without a retry -- costs one statement
    for all the results together on PostgreSQL (a busy worker reports every slot in one
    fetch); a possible retry, two (it is decided between closing and finishing); what
    is not the common case, one by one after them.
    """
    states: dict[int, TaskState | DomainError] = {}
    released: Released = []
    endings: dict[int, _Ending] = {}
    for index, (task_uuid, report) in enumerate(results):
        if report.reason == TaskReason.WORKER_STOPPED:
            stopped = _record_stopped(db, worker_uuid, task_uuid, report, now, released, wakeups)
            states[index] = await refusal(stopped)
        else:
            endings[index] = _Ending.of(task_uuid, report)
    at_once = _ending_at_once(db, endings)
    closed, finished = await _close_and_finish(db, worker_uuid, [endings[i] for i in at_once], now)
    step_by_step = [ending for index, ending in endings.items() if index not in at_once]
    closed |= await _close_attempts(db, worker_uuid, step_by_step, now)
    finishing: dict[int, int] = {}  # index -> task id
    for index, ending in endings.items():
        task_id = closed.get(ending.key)
        if task_id is None:
            states[index] = await refusal(_not_closed(db, worker_uuid, ending.task, ending.report))
            continue
        retried = ending.may_retry and await _retry(db, task_id, ending.report.attempt, now)
        if not retried:
            finishing[index] = task_id
            continue
        await publishing.tasks_changed(db, wakeups, [ending.task])
        states[index] = TaskState.READY
        released.append((TaskState.READY, retried))
    finished |= await _finish_tasks(db, [endings[i] for i in finishing if i not in at_once], now)
    for index, task_id in finishing.items():
        ending = endings[index]
        task = finished.get(ending.key)
        if task is None:  # cancelled while running: keep the verdict, record how it ended
            states[index] = await _record_cancelled(db, task_id, ending, wakeups)
            continue
        publish_row(db, wakeups, task, EventKind.TASK_STATE)
        states[index] = ending.state
    if upstreams := await workflows.with_dependents(db, [task.id for task in finished.values()]):
        groups, _ = await workflows.settle(db, now, upstream_ids=upstreams)
        released += [(TaskState.READY, group_id) for group_id in groups]
        await publishing.tasks_changed(db, wakeups, [])  # the dependents settle moved
    return Recorded([states[i] for i in range(len(results))], released)


def _ending_at_once(db: AsyncSession, endings: dict[int, _Ending]) -> set[int]:
    """The results whose attempt and task can end in one statement: on PostgreSQL, those
    that cannot lead to a retry (a retry is decided between the two)."""
    if not driver.uses_driver(db.bind):
        return set()
    return {index for index, ending in endings.items() if not ending.may_retry}


async def _close_and_finish(
    db: AsyncSession, worker_uuid: uuid.UUID, endings: list[_Ending], now: datetime
) -> tuple[dict[tuple[uuid.UUID, int], int], dict[tuple[uuid.UUID, int], Row]]:
    """:func:`_close_attempts` and :func:`_finish_tasks` in one statement (PostgreSQL)."""
    if not endings:
        return {}, {}
    parameters = _arrays(endings) | {"worker": worker_uuid, "now": now}
    rows = await driver.rows(db, _close_and_finish_statement(), parameters)
    closed = {(row.closed_task, row.closed_attempt): row.closed_task_id for row in rows}
    finished = {(row.uuid, row.attempt): row for row in rows if row.id is not None}
    return closed, finished


async def _close_attempts(
    db: AsyncSession, worker_uuid: uuid.UUID, endings: list[_Ending], now: datetime
) -> dict[tuple[uuid.UUID, int], int]:
    """Close the attempts these results end that are open and held by the worker (the
    fence); the task id of each, by (task uuid, attempt)."""
    parameters = {"worker": worker_uuid, "now": now}
    rows = await _for_each(db, 0, endings, parameters)
    return {(row.task, row.b_attempt): row.task_id for row in rows}


async def _finish_tasks(
    db: AsyncSession, endings: list[_Ending], now: datetime
) -> dict[tuple[uuid.UUID, int], Row]:
    """End the tasks still running these attempts (not cancelled or superseded meanwhile);
    the rows their events need, by (task uuid, attempt)."""
    rows = await _for_each(db, 1, endings, {"now": now})
    return {(row.uuid, row.attempt): row for row in rows}


async def _for_each(db: AsyncSession, which: int, endings: list[_Ending], parameters: dict) -> list:
    """The rows of result statement ``which`` (0: close, 1: finish) for every ending: one
    statement for them all on PostgreSQL, one per ending elsewhere."""
    if not endings:
        return []
    together = driver.uses_driver(db.bind)
    statement = _result_statements(together)[which]
    if together:
        return await driver.rows(db, statement, _arrays(endings) | parameters)
    found = [await one(db, statement, ending.values() | parameters) for ending in endings]
    return [row for row in found if row is not None]


def _arrays(endings: list[_Ending]) -> dict[str, list]:
    """The endings as one array per value, for PostgreSQL's ``unnest``."""
    rows = [ending.values() for ending in endings]
    return {f"r_{name}": [row[name] for row in rows] for name in RESULT_VALUES}


async def _not_closed(
    db: AsyncSession, worker_uuid: uuid.UUID, task_uuid: uuid.UUID, report: ResultReport
) -> TaskState:
    """The attempt was not open for this worker: a retry of a recorded result is answered
    with the task's state; anything else is refused with the reason."""
    row = await attempt_row(db, task_uuid, report.attempt)
    if _already_recorded(row, worker_uuid, report):
        return TaskState(row.state)
    check_held(row, worker_uuid, task_uuid, report.attempt)
    raise conflict(f"attempt {report.attempt} of task {task_uuid} has already ended")


async def _record_stopped(
    db: AsyncSession,
    worker_uuid: uuid.UUID,
    task_uuid: uuid.UUID,
    report: ResultReport,
    now: datetime,
    released: Released,
    wakeups: Wakeups | None,
) -> TaskState:
    """The worker killed the attempt to stop: requeue it like a lost one (T8). One that was
    still ``waiting`` (held ahead, never started) is handed back and does not count."""
    row = await attempt_row(db, task_uuid, report.attempt)
    if _already_recorded(row, worker_uuid, report):
        return TaskState(row.state)
    held = check_held(row, worker_uuid, task_uuid, report.attempt)
    released += await release_attempts(
        db,
        [held.attempt_id],
        now,
        REQUEUED,
        TaskReason.WORKER_STOPPED,
        report.message,
        unstarted=report.phase == TaskPhase.WAITING,
    )
    state = await db.scalar(select(Task.state).where(Task.id == held.task_id))
    await publishing.tasks_changed(db, wakeups, [task_uuid])
    return TaskState(state)


async def _record_cancelled(
    db: AsyncSession, task_id: int, ending: _Ending, wakeups: Wakeups | None
) -> TaskState:
    report = ending.report
    await db.execute(
        update(Task)
        .execution_options(synchronize_session=False)
        .where(Task.id == task_id, Task.attempt == report.attempt)
        .values(exit_code=report.exit_code, signal=report.signal, deadline_at=None)
    )
    state = await db.scalar(select(Task.state).where(Task.id == task_id))
    await publishing.tasks_changed(db, wakeups, [ending.task])
    return TaskState(state)


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
