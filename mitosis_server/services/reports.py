"""What workers report about the attempts they hold: phases (FEATURES T4) and results (T3, T8).

Reports arrive one by one (``/tasks/{id}/phase`` and ``/result``) or several in a fetch
(:func:`apply_reports`); both go through :func:`report_phase` and :func:`report_result`. The
fence every report passes is ``attempt_fence``; how a result ends its attempt and task is
``results``; phases, which only move forward, are here.
"""

from __future__ import annotations

import functools
import uuid

from sqlalchemy import (
    Float,
    Integer,
    Update,
    bindparam,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.errors import ErrorBody
from mitosis_sdk.schemas import (
    FetchRequest,
    PhaseReport,
    ReportAck,
    ReportOutcome,
    ResultReport,
    TaskPhase,
    TaskState,
)
from mitosis_sdk.schemas.events import EventKind
from mitosis_server.db.dialects import seconds_after
from mitosis_server.db.models import (
    Task,
    TaskAttempt,
    utcnow,
)
from mitosis_server.errors import DomainError, conflict
from mitosis_server.services import publishing, workflows
from mitosis_server.services.attempt_fence import (
    ATTEMPT,
    NOW,
    one,
    open_attempt,
    publish_row,
    refusal,
    task_update,
)
from mitosis_server.services.results import Recorded, record_results
from mitosis_server.services.scheduling import (
    IS_RUNNING,
    attempt_row,
    check_held,
    requeued_groups,
)
from mitosis_server.services.wakeups import Wakeups, notify_after_commit


@functools.cache
def _phase_statements(phase: TaskPhase) -> tuple[Update, Update]:
    """Record ``phase`` on the attempt (forward only), then on the task with a deadline
    pushed out again (its timeout plus the report margin from now)."""
    allowed = [p.value for p in TaskPhase if p.rank <= phase.rank]
    on_attempt = (
        update(TaskAttempt)
        .where(
            *open_attempt(),
            TaskAttempt.phase.is_(None) | TaskAttempt.phase.in_(allowed),
        )
        .values(phase=phase.value)
        .returning(TaskAttempt.task_id)
    )
    on_task = task_update(
        Task.id == bindparam("task_id", type_=Integer),
        Task.attempt == ATTEMPT,
        IS_RUNNING,
        phase=phase.value,
        deadline_at=seconds_after(NOW, Task.timeout + bindparam("margin", type_=Float)),
    )
    return on_attempt, on_task


async def report_phase(
    db: AsyncSession,
    worker_uuid: uuid.UUID,
    task_uuid: uuid.UUID,
    report: PhaseReport,
    margin: float,
    wakeups: Wakeups | None = None,
) -> ReportAck:
    """Progress of an attempt (T4; forward only); ``cancel`` tells the worker to kill it."""
    now = utcnow()
    on_attempt, on_task = _phase_statements(report.phase)
    fence = {"task": task_uuid, "b_attempt": report.attempt, "worker": worker_uuid}
    recorded = await one(db, on_attempt, fence)
    if recorded is None:
        row = await attempt_row(db, task_uuid, report.attempt)
        held = check_held(row, worker_uuid, task_uuid, report.attempt)
        raise conflict(f"task {task_uuid} is already past phase {report.phase} (at {held.phase})")
    parameters = {"task_id": recorded.task_id, "b_attempt": report.attempt, "now": now}
    task = await one(db, on_task, parameters | {"margin": margin})
    if task is None:  # no longer running this attempt (cancelled): say so, change nothing
        state = await db.scalar(select(Task.state).where(Task.id == recorded.task_id))
        await publishing.tasks_changed(db, wakeups, [task_uuid], EventKind.TASK_PHASE)
        return ReportAck(state=TaskState(state), cancel=state == TaskState.CANCELLED)
    spawned = report.phase == TaskPhase.SPAWNED
    if spawned and await workflows.with_dependents(db, [task.id]):  # ``after`` may start (T6)
        groups, changed = await workflows.settle_moved(db, task_uuid, now)
        notify_after_commit(db, wakeups, groups=groups)
        await publishing.tasks_changed(db, wakeups, changed)
    publish_row(db, wakeups, task, EventKind.TASK_PHASE)
    return ReportAck(state=TaskState(task.state))


async def report_result(
    db: AsyncSession,
    worker_uuid: uuid.UUID,
    task_uuid: uuid.UUID,
    report: ResultReport,
    wakeups: Wakeups | None,
) -> ReportAck:
    """How an attempt ended (T3, T8); frees the slot, so the worker's parked fetch looks."""
    recorded = await _record_and_wake(db, worker_uuid, [(task_uuid, report)], wakeups)
    state = recorded.states[0]
    if isinstance(state, DomainError):
        raise state
    return ReportAck(state=state)


async def _record_and_wake(
    db: AsyncSession,
    worker_uuid: uuid.UUID,
    results: list[tuple[uuid.UUID, ResultReport]],
    wakeups: Wakeups | None,
) -> Recorded:
    """Record the results; after the commit, wake the fetches that may take what they freed
    (the worker's own slots, requeued and released tasks' groups)."""
    recorded = await record_results(db, worker_uuid, results, utcnow(), wakeups)
    groups = await requeued_groups(db, recorded.released)
    notify_after_commit(db, wakeups, groups=groups, workers=[worker_uuid])
    return recorded


# --- several at once, in a fetch --------------------------------------------------------------


def _outcome(task: uuid.UUID, attempt: int, ack: ReportAck | DomainError) -> ReportOutcome:
    """One report's outcome: acknowledged, or refused (a refusal is raised before the report
    writes anything, so the others go on)."""
    if isinstance(ack, DomainError):
        body = ErrorBody(error=ack.code, message=ack.message, details=ack.details)
        return ReportOutcome(task=task, attempt=attempt, refused=body)
    return ReportOutcome(task=task, attempt=attempt, ack=ack)


async def apply_reports(
    db: AsyncSession,
    worker_uuid: uuid.UUID,
    request: FetchRequest,
    margin: float,
    wakeups: Wakeups | None,
) -> list[ReportOutcome]:
    """Record a fetch's phases, then its results; one outcome per report, in that order."""
    outcomes: list[ReportOutcome] = []
    for entry in request.phases:
        phase = report_phase(db, worker_uuid, entry.task, entry.report, margin, wakeups)
        outcomes.append(_outcome(entry.task, entry.report.attempt, await refusal(phase)))
    if request.results:
        results = [(entry.task, entry.report) for entry in request.results]
        recorded = await _record_and_wake(db, worker_uuid, results, wakeups)
        for entry, state in zip(request.results, recorded.states, strict=True):
            ack = state if isinstance(state, DomainError) else ReportAck(state=state)
            outcomes.append(_outcome(entry.task, entry.report.attempt, ack))
    return outcomes
