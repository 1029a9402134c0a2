"""The worker's side of dispatch: signs of life, orders, and the long-poll fetch (S4, W2).

A worker's row is updated by every fetch and heartbeat (``touch_worker``): that records the
sign of life, brings a lost worker back online and, on PostgreSQL, locks the row, so two
fetches of one worker never overbook its slots. What the worker must do next (kill attempts,
drain, shut down) is computed from committed state by ``commands_for`` and sent in every
heartbeat and fetch reply.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mitosis_sdk.schemas import (
    AttemptRef,
    FetchReply,
    PhaseReport,
    ReportAck,
    ResultReport,
    TaskPhase,
    TaskState,
    WorkerCommands,
    WorkerState,
)
from mitosis_sdk.schemas.events import EventKind
from mitosis_server.db.models import Group, Task, TaskAttempt, Worker, WorkerGrant, utcnow
from mitosis_server.errors import conflict, not_found
from mitosis_server.services import publishing, workflows
from mitosis_server.services.scheduling import (
    RUN_ROLES,
    claim_tasks,
    record_phase,
    record_result,
    requeued_groups,
)
from mitosis_server.services.wakeups import RECHECK, Wakeups, notify_after_commit, worker_key


@dataclass(frozen=True)
class WorkerSlot:
    id: int
    state: WorkerState
    drain: bool
    shutdown: str | None
    free: int
    # (attempt id, task uuid, attempt, task state) of the attempts it holds
    held: list[tuple[int, uuid.UUID, int, str]]


async def touch_worker(db: AsyncSession, worker_uuid: uuid.UUID, now: datetime) -> WorkerSlot:
    """Record a sign of life (a lost worker that speaks is back online) and lock the row.

    Raises 404 for an unknown worker and 409 for one that has unregistered.
    """
    row = (
        await db.execute(
            update(Worker)
            .execution_options(synchronize_session=False)
            .where(Worker.uuid == worker_uuid)
            .values(
                last_heartbeat=now,
                state=case(
                    (
                        Worker.state == WorkerState.LOST,
                        case(
                            (Worker.drain, WorkerState.DRAINING.value),
                            else_=WorkerState.ONLINE.value,
                        ),
                    ),
                    else_=Worker.state,
                ),
            )
            .returning(Worker.id, Worker.state, Worker.drain, Worker.shutdown, Worker.slots)
        )
    ).one_or_none()
    if row is None:
        raise not_found(f"worker {worker_uuid}")
    if row.state == WorkerState.STOPPED:
        raise conflict(f"worker {worker_uuid} has unregistered; register again")
    held = await open_attempts(db, row.id)
    state = WorkerState(row.state)
    return WorkerSlot(row.id, state, row.drain, row.shutdown, row.slots - len(held), held)


async def fetch_tasks(
    sessions: async_sessionmaker[AsyncSession],
    wakeups: Wakeups,
    worker_uuid: uuid.UUID,
    max_tasks: int,
    wait: float,
    margin: float,
) -> FetchReply:
    """Claim tasks for a worker, parking up to ``wait`` seconds until one arrives (S4).

    Each look is its own short transaction (a parked request must not hold one: on SQLite
    that would block every writer). The waiter exists before the first look, so a submit
    that commits after a look wakes it; the look repeats every ``RECHECK`` seconds anyway,
    for submissions on other coordinators. The fetch also returns early when the worker's
    orders change (a cancelled task, drain, shutdown), so the worker learns at once.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + wait
    orders_changed = False
    with wakeups.waiter(workers=[worker_uuid]) as waiter:
        while True:
            async with sessions.begin() as db:
                now = utcnow()
                slot = await touch_worker(db, worker_uuid, now)
                takes = slot.state == WorkerState.ONLINE and slot.shutdown is None
                limit = min(slot.free, max_tasks) if takes else 0
                tasks = await claim_tasks(db, slot.id, limit, now, margin)
                if tasks or slot.shutdown or orders_changed or loop.time() >= end:
                    return FetchReply(tasks=tasks, commands=await commands_for(db, slot, []))
                groups = await run_groups(db, slot.id) if takes else []
            if waiter.watch(groups=groups):
                continue  # listening to new groups now: look once more before parking
            woken = await waiter.wait(min(RECHECK, end - loop.time()))
            # Something changed for this worker (cancel, drain, tags ...): answer after one
            # more look, so it hears of it now rather than at its next heartbeat.
            orders_changed = worker_key(worker_uuid) in woken


async def commands_for(
    db: AsyncSession, slot: WorkerSlot, reported: list[AttemptRef]
) -> WorkerCommands:
    """The worker's orders: kill attempts of cancelled tasks and attempts it reports running
    that it no longer holds (superseded or released); drain; shut down."""
    held = slot.held  # read with the worker's row, in this transaction
    cancel = [
        AttemptRef(task=u, attempt=a) for _, u, a, state in held if state == TaskState.CANCELLED
    ]
    holding = {(u, a) for _, u, a, _ in held}
    cancel += [r for r in reported if (r.task, r.attempt) not in holding]
    return WorkerCommands(
        state=slot.state,
        cancel=cancel,
        drain=slot.drain,
        shutdown=slot.shutdown,
    )


async def run_groups(db: AsyncSession, worker_id: int) -> list[str]:
    """Groups whose tasks may run on the worker (what its parked fetch listens to)."""
    return list(
        await db.scalars(
            select(Group.name)
            .join(WorkerGrant, WorkerGrant.group_id == Group.id)
            .where(WorkerGrant.worker_id == worker_id, WorkerGrant.role.in_(RUN_ROLES))
        )
    )


async def open_attempts(db: AsyncSession, worker_id: int) -> list[tuple[int, uuid.UUID, int, str]]:
    """(attempt id, task uuid, attempt, task state) of every attempt the worker holds."""
    rows = await db.execute(
        select(TaskAttempt.id, Task.uuid, TaskAttempt.attempt, Task.state)
        .join(Task, Task.id == TaskAttempt.task_id)
        .where(TaskAttempt.worker_id == worker_id, TaskAttempt.ended_at.is_(None))
    )
    return [tuple(r) for r in rows]


async def report_phase(
    db: AsyncSession,
    worker_uuid: uuid.UUID,
    task_uuid: uuid.UUID,
    report: PhaseReport,
    margin: float,
    wakeups: Wakeups | None = None,
) -> ReportAck:
    """Progress of an attempt (T4); ``cancel`` tells the worker to kill it now."""
    now = utcnow()
    state = await record_phase(
        db, worker_uuid, task_uuid, report.attempt, report.phase, now, margin
    )
    if report.phase == TaskPhase.SPAWNED:  # ``after`` dependents may start now (T6)
        groups, changed = await workflows.settle_moved(db, task_uuid, now)
        notify_after_commit(db, wakeups, groups=groups)
        await publishing.tasks_changed(db, wakeups, changed)
    await publishing.tasks_changed(db, wakeups, [task_uuid], EventKind.TASK_PHASE)
    return ReportAck(state=state, cancel=state == TaskState.CANCELLED)


async def report_result(
    db: AsyncSession,
    worker_uuid: uuid.UUID,
    task_uuid: uuid.UUID,
    report: ResultReport,
    wakeups: Wakeups | None,
) -> ReportAck:
    """How an attempt ended (T3, T8); frees the slot, so the worker's parked fetch looks."""
    state, released = await record_result(db, worker_uuid, task_uuid, report, utcnow())
    groups = await requeued_groups(db, released)
    notify_after_commit(db, wakeups, groups=groups, workers=[worker_uuid])
    await publishing.tasks_changed(db, wakeups, [task_uuid])
    return ReportAck(state=state)
