"""The worker's side of dispatch: signs of life, orders, and the long-poll fetch (S4, W2).

A worker's row is updated by every fetch and heartbeat (``touch_worker``): that records the
sign of life, brings a lost worker back online and, on PostgreSQL, locks the row, so two
fetches of one worker never overbook it (its slots, plus the tasks it asked to hold ahead of
them). What the worker must do next (kill attempts, drain, shut down) is computed from
committed state by ``commands_for`` and sent in every heartbeat and fetch reply.

A fetch is also the worker's report: the results and phases it carries are recorded in the
same transaction as the claim, before it (a result frees its slot for the claim), so a busy
worker spends one request and one commit per task.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, Update, Uuid, bindparam, case, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mitosis_sdk.schemas import (
    MAX_SLOTS,
    Assignment,
    AttemptRef,
    FetchReply,
    FetchRequest,
    TaskState,
    WorkerCommands,
    WorkerState,
)
from mitosis_server.db import driver
from mitosis_server.db.engine import reading, transaction
from mitosis_server.db.models import (
    Group,
    Task,
    TaskAttempt,
    UTCDateTime,
    Worker,
    WorkerGrant,
    utcnow,
)
from mitosis_server.errors import conflict, not_found
from mitosis_server.services import publishing
from mitosis_server.services.claims import claim_tasks, held_assignments, takeable_statement
from mitosis_server.services.reports import apply_reports
from mitosis_server.services.scheduling import RUN_ROLES
from mitosis_server.services.wakeups import CLOSING, RECHECK, Wakeups, worker_key


@dataclass(frozen=True)
class WorkerRow:
    id: int
    state: WorkerState
    drain: bool
    shutdown: str | None
    slots: int


@dataclass(frozen=True)
class WorkerSlot:
    id: int
    state: WorkerState
    drain: bool
    shutdown: str | None
    free: int
    # (attempt id, task uuid, attempt, task state, task id) of the attempts it holds
    held: list[tuple[int, uuid.UUID, int, str, int]]


@functools.cache
def _touch_statement() -> Update:
    return (
        update(Worker)
        .where(Worker.uuid == bindparam("worker", type_=Uuid))
        .values(
            last_heartbeat=bindparam("now", type_=UTCDateTime),
            online_since=case(
                (Worker.state == WorkerState.LOST, bindparam("now", type_=UTCDateTime)),
                else_=Worker.online_since,
            ),
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
        .returning(
            Worker.id,
            Worker.state,
            Worker.drain,
            Worker.shutdown,
            Worker.slots,
            (Worker.online_since == bindparam("now", type_=UTCDateTime)).label("revived"),
        )
    )


async def touch_worker(
    db: AsyncSession, worker_uuid: uuid.UUID, now: datetime, wakeups: Wakeups | None
) -> WorkerRow:
    """Record a sign of life (a lost worker that speaks is back online, which is published)
    and lock the row.

    Raises 404 for an unknown worker and 409 for one that has unregistered.
    """
    found = await driver.rows(db, _touch_statement(), {"worker": worker_uuid, "now": now})
    if not found:
        raise not_found(f"worker {worker_uuid}")
    row = found[0]
    if row.state == WorkerState.STOPPED:
        raise conflict(f"worker {worker_uuid} has unregistered; register again")
    if row.revived:
        await publishing.workers_changed(db, wakeups, [worker_uuid])
    return WorkerRow(row.id, WorkerState(row.state), row.drain, row.shutdown, row.slots)


async def worker_slot(db: AsyncSession, worker: WorkerRow, ahead: int = 0) -> WorkerSlot:
    """The worker's attempts and how many more it may hold, read in this transaction: its
    slots, and ``ahead`` tasks beyond them that it queues itself (``MAX_SLOTS`` in all)."""
    held = await open_attempts(db, worker.id)
    free = min(worker.slots + ahead, MAX_SLOTS) - len(held)
    return WorkerSlot(worker.id, worker.state, worker.drain, worker.shutdown, free, held)


async def fetch_tasks(
    sessions: async_sessionmaker[AsyncSession],
    wakeups: Wakeups,
    worker_uuid: uuid.UUID,
    request: FetchRequest,
    margin: float,
) -> FetchReply:
    """Record the fetch's reports, claim tasks, parking up to ``wait`` seconds until one
    arrives (S4).

    Each look is its own short transaction (a parked request must not hold one: on SQLite
    that would block every writer); the reports go into the first, which commits before
    any parking. The waiter exists before the first look, so a submit that commits after a
    look wakes it; the look repeats every ``RECHECK`` seconds anyway, for submissions on
    other coordinators (and retry backoffs running out), and is skipped after a cheap read
    when there is nothing to take; a wake-up from one of its groups claims at once. The
    fetch answers at once when it carried reports (the worker waits for their outcomes) and
    early when the worker's orders change (a cancelled task, drain, shutdown), so the worker
    learns at once.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + request.wait_seconds
    outcomes = []
    orders_changed = False
    first = look = True
    with wakeups.waiter(workers=[worker_uuid]) as waiter:
        while True:
            if look:
                async with transaction(sessions) as db:
                    now = utcnow()
                    worker = await touch_worker(db, worker_uuid, now, wakeups)
                    if first and request.reports:
                        outcomes = await apply_reports(db, worker_uuid, request, margin, wakeups)
                    slot = await worker_slot(db, worker, request.ahead)
                    takes = slot.state == WorkerState.ONLINE and slot.shutdown is None
                    limit = min(slot.free, request.max_tasks) if takes else 0
                    tasks = await claim_tasks(db, slot.id, limit, now, margin)
                    if request.known is not None:
                        tasks += await _undelivered(db, slot, request.known)
                    answer = first and request.reports
                    if tasks or answer or slot.shutdown or orders_changed or loop.time() >= end:
                        commands = commands_for(slot, [])
                        return FetchReply(tasks=tasks, commands=commands, reports=outcomes)
                    groups = await run_groups(db, slot.id) if takes else []
            first = False
            if waiter.watch(groups=groups):
                # Listening to new groups now: did anything arrive before? Then look again.
                look = limit > 0 and await _worth_a_look(sessions, slot.id)
                continue
            woken = await waiter.wait(min(RECHECK, end - loop.time()))
            if CLOSING in woken:  # no claim: the reply might not make it out any more
                return FetchReply(tasks=[], commands=commands_for(slot, []), reports=outcomes)
            # Something changed for this worker (cancel, drain, tags ...): answer after one
            # more look, so it hears of it now rather than at its next heartbeat.
            orders_changed = worker_key(worker_uuid) in woken
            # A task became ready in one of its groups: claim at once (the cheap read would
            # find it too, a round trip later, on the path of every fresh submit).
            offered = limit > 0 and bool(woken - {worker_key(worker_uuid)})
            look = orders_changed or offered or loop.time() >= end
            look = look or (limit > 0 and await _worth_a_look(sessions, slot.id))


async def _worth_a_look(sessions: async_sessionmaker[AsyncSession], worker_id: int) -> bool:
    """Is there a task the worker may take now? A parked fetch asks this (reading only: no
    lock, no write, no commit to flush) before it spends a claiming look, so a fleet of idle
    workers costs the database one small read each per ``RECHECK``.

    It is on the path of every wake-up, a fresh submit's included: on PostgreSQL it is one
    statement on a pooled connection outside any transaction (no session, no BEGIN, no
    ROLLBACK), which took the wake-up's first look from 2 ms to a few tenths."""
    parameters = {"worker_id": worker_id, "now": utcnow()}
    engine = sessions.kw["bind"]
    if driver.uses_driver(engine):
        async with driver.autocommit(engine) as connection:
            return bool(await connection.rows(takeable_statement(), parameters))
    async with reading(sessions) as db:
        return bool(await driver.rows(db, takeable_statement(), parameters))


async def _undelivered(
    db: AsyncSession, slot: WorkerSlot, known: list[AttemptRef]
) -> list[Assignment]:
    """Running attempts held for the worker that it does not know of: a fetch claimed them
    but its reply never arrived. They are delivered again (same attempt), not left to run
    out their deadline."""
    knows = {(ref.task, ref.attempt) for ref in known}
    missing = [
        task_id
        for _, task_uuid, attempt, state, task_id in slot.held
        if state == TaskState.RUNNING and (task_uuid, attempt) not in knows
    ]
    return await held_assignments(db, missing)


def commands_for(slot: WorkerSlot, reported: list[AttemptRef]) -> WorkerCommands:
    """The worker's orders: kill attempts of cancelled tasks and attempts it reports running
    that it no longer holds (superseded or released); drain; shut down."""
    held = slot.held  # read with the worker's row, in this transaction
    cancel = [
        AttemptRef(task=u, attempt=a) for _, u, a, state, _ in held if state == TaskState.CANCELLED
    ]
    holding = {(u, a) for _, u, a, _, _ in held}
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


@functools.cache
def _open_attempts_statement() -> Select:
    return (
        select(TaskAttempt.id, Task.uuid, TaskAttempt.attempt, Task.state, Task.id)
        .join(Task, Task.id == TaskAttempt.task_id)
        .where(TaskAttempt.worker_id == bindparam("worker_id"), TaskAttempt.ended_at.is_(None))
    )


async def open_attempts(
    db: AsyncSession, worker_id: int
) -> list[tuple[int, uuid.UUID, int, str, int]]:
    """(attempt id, task uuid, attempt, task state, task id) of every attempt it holds."""
    rows = await driver.rows(db, _open_attempts_statement(), {"worker_id": worker_id})
    return [tuple(r) for r in rows]
