"""Publishing committed task and worker changes on the event bus (FEATURES E1, X5).

Services call :func:`tasks_changed` / :func:`workers_changed` inside their transaction, right
after the change. The current row is read there (one small query: state, phase, group, and
for a worker every group with a grant, which is who may see the event), and the publish is
queued as an ``after_commit`` callback of the session, so nothing is published for a change
that rolls back, and nothing is seen before it is visible. A task that reached a terminal
state also gets its live log closed (``end_log``).

Transitions made deep inside a transaction by code that has no bus at hand (dependents
settled by :mod:`~mitosis_server.services.workflows`, attempts released by
:func:`~mitosis_server.services.scheduling.release_attempts`) are *noted* on the session with
:func:`note_tasks`; the next :func:`tasks_changed` of that transaction publishes them too, so
every path that ends in one publish call (report, cancel, submit, unregister, the liveness
sweep) publishes every task it moved. Sessions outside a request (the liveness job) run the
``after_commit`` callbacks themselves with :func:`run_after_commit`.

The bus is reached through the coordinator's :class:`Wakeups` (``wakeups.bus``), which every
changing service already receives; with no bus attached (unit tests) these are no-ops.
Publishing never fails a request: events are hints, polling is the backstop.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas import TaskState
from mitosis_sdk.schemas.events import Event, EventKind
from mitosis_server.db.models import Group, Task, Worker, WorkerGrant

log = logging.getLogger(__name__)

TERMINAL = {TaskState.COMPLETED.value, TaskState.FAILED.value, TaskState.CANCELLED.value}
CHUNK = 5000  # values per IN list (SQLite's bound-parameter limit)


NOTED = "publish_tasks"


def bus_of(wakeups: Any) -> Any:
    """The event bus the coordinator's wake-ups carry (None in tests that run without one)."""
    return getattr(wakeups, "bus", None)


def note_tasks(db: AsyncSession, task_ids: Iterable[int]) -> None:
    """Remember tasks (by row id) this transaction moved, for its next :func:`tasks_changed`."""
    db.info.setdefault(NOTED, set()).update(task_ids)


async def run_after_commit(db: AsyncSession) -> None:
    """Run what was queued for after the commit (for sessions that are not a request's)."""
    for callback in db.info.pop("after_commit", ()):
        await callback()


def publish_after_commit(db: AsyncSession, bus: Any, events: list[Event], ended: list[str]) -> None:
    """Queue ``events`` (and closing the logs of ``ended`` tasks) for after the commit."""
    if bus is None or not (events or ended):
        return

    async def _publish() -> None:
        await publish(bus, events, ended)

    db.info.setdefault("after_commit", []).append(_publish)


async def publish(bus: Any, events: list[Event], ended: list[str]) -> None:
    """Publish ``events`` (and close the logs of ``ended`` tasks) now: what has committed."""
    if bus is None:
        return
    try:
        await bus.publish(*events)
        for task_id in ended:
            await bus.end_log(task_id)
    except Exception as exc:  # a hint lost; clients poll as a backstop
        log.warning("events.publish_failed count=%d error=%s", len(events), exc)


# The task's columns an event is made of (with its group's name, as ``group``).
EVENT_COLUMNS = (
    Task.id,
    Task.uuid,
    Task.state,
    Task.phase,
    Task.attempt,
    Task.exit_code,
    Task.reason,
)


def task_event(row: Any, kind: EventKind = EventKind.TASK_STATE) -> Event:
    payload = {"state": row.state, "phase": row.phase, "attempt": row.attempt}
    if row.exit_code is not None:
        payload["exit_code"] = row.exit_code
    if row.reason is not None:
        payload["reason"] = row.reason
    return Event(kind=kind, groups=[row.group], object_id=str(row.uuid), payload=payload)


async def tasks_changed(
    db: AsyncSession,
    wakeups: Any,
    task_uuids: Iterable[uuid.UUID],
    kind: EventKind = EventKind.TASK_STATE,
) -> None:
    """Publish the current state of these tasks once the transaction commits, and (as
    ``task.state``) of every task noted on this transaction so far."""
    bus, wanted = bus_of(wakeups), list(dict.fromkeys(task_uuids))
    noted = sorted(db.info.pop(NOTED, ()))
    if bus is None or not (wanted or noted):
        return
    rows = await _task_rows(db, Task.uuid, wanted)
    order = {u: i for i, u in enumerate(wanted)}
    rows.sort(key=lambda r: order[r.uuid])
    events = [task_event(r, kind) for r in rows]
    if kind == EventKind.TASK_STATE:
        seen = {r.uuid for r in rows}
    else:
        seen, rows = set(), []
    extra = [r for r in await _task_rows(db, Task.id, noted) if r.uuid not in seen]
    rows += extra
    events += [task_event(r) for r in extra]
    ended = [str(r.uuid) for r in rows if r.state in TERMINAL]
    publish_after_commit(db, bus, events, ended)


async def _task_rows(db: AsyncSession, column: Any, values: list) -> list:
    """What a task event carries, for the tasks whose ``column`` is in ``values``."""
    rows: list = []
    for start in range(0, len(values), CHUNK):
        rows += (
            await db.execute(
                select(*EVENT_COLUMNS, Group.name.label("group"))
                .join(Group, Group.id == Task.group_id)
                .where(column.in_(values[start : start + CHUNK]))
                .order_by(Task.id)
            )
        ).all()
    return rows


async def workers_changed(
    db: AsyncSession, wakeups: Any, worker_uuids: Iterable[uuid.UUID]
) -> None:
    """Publish the current state of these workers (seen by every group with a grant)."""
    bus, wanted = bus_of(wakeups), list(dict.fromkeys(worker_uuids))
    if bus is None or not wanted:
        return
    workers = (
        await db.execute(
            select(Worker.id, Worker.uuid, Worker.state, Worker.drain).where(
                Worker.uuid.in_(wanted)
            )
        )
    ).all()
    grants = (
        await db.execute(
            select(WorkerGrant.worker_id, Group.name)
            .join(Group, Group.id == WorkerGrant.group_id)
            .where(WorkerGrant.worker_id.in_([w.id for w in workers]))
        )
    ).all()
    groups: dict[int, list[str]] = {}
    for worker_id, name in grants:
        groups.setdefault(worker_id, []).append(name)
    events = [
        Event(
            kind=EventKind.WORKER_STATE,
            groups=sorted(groups.get(w.id, [])),
            object_id=str(w.uuid),
            payload={"state": w.state, "drain": w.drain},
        )
        for w in workers
    ]
    publish_after_commit(db, bus, events, [])


async def publish_claimed(bus: Any, worker_uuid: uuid.UUID, assignments: list) -> None:
    """Tasks a fetch claimed (its own short transaction has already committed)."""
    if bus is None or not assignments:
        return
    events = [
        Event(
            kind=EventKind.TASK_STATE,
            groups=[a.group],
            object_id=str(a.task),
            payload={
                "state": TaskState.RUNNING.value,
                "attempt": a.attempt,
                "worker": str(worker_uuid),
            },
        )
        for a in assignments
    ]
    try:
        await bus.publish(*events)
    except Exception as exc:
        log.warning("events.publish_failed count=%d error=%s", len(events), exc)
