"""What every report of an attempt goes through: the fence, and the task row it returns.

A report counts only for an open attempt held by the reporting worker (FEATURES T8), so each
statement that records one carries :func:`open_attempt` in its WHERE clause -- a late report
and the liveness monitor never both win -- and the task UPDATE behind it returns what the
task's event needs (:func:`task_update`), so no report reads the task again to publish it.
Phases (``reports``) and results (``results``) share these. A refusal is a
:class:`DomainError` raised before the report writes anything; :func:`refusal` turns it into
a value, so one refused report of a fetch never stops the others.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from sqlalchemy import (
    Integer,
    Row,
    Update,
    Uuid,
    bindparam,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas.events import EventKind
from mitosis_server.db import driver
from mitosis_server.db.models import (
    Group,
    Task,
    TaskAttempt,
    UTCDateTime,
    Worker,
)
from mitosis_server.errors import DomainError
from mitosis_server.services import publishing
from mitosis_server.services.wakeups import Wakeups

TASK = bindparam("task", type_=Uuid)


ATTEMPT = bindparam("b_attempt", type_=Integer)


NOW = bindparam("now", type_=UTCDateTime)


WORKER = bindparam("worker", type_=Uuid)


def open_attempt(task: Any = TASK, attempt: Any = ATTEMPT) -> list:
    """The fence: the attempt is open and held by the reporting worker."""
    return [
        TaskAttempt.task_id == select(Task.id).where(Task.uuid == task).scalar_subquery(),
        TaskAttempt.attempt == attempt,
        TaskAttempt.ended_at.is_(None),
        TaskAttempt.worker_id == select(Worker.id).where(Worker.uuid == WORKER).scalar_subquery(),
    ]


def task_update(*where, **values) -> Update:
    """An UPDATE of the task running an attempt (``where`` names it), returning what its
    event needs."""
    return (
        update(Task)
        .where(*where)
        .values(**values)
        .returning(
            *publishing.EVENT_COLUMNS,
            # Unqualified on SQLite (see claims): neither subquery's table has these columns.
            select(Group.name).where(Group.id == Task.group_id).scalar_subquery().label("group"),
            Task.group_id,
        )
    )


async def one(db: AsyncSession, statement, parameters: dict) -> Row | None:
    found = await driver.rows(db, statement, parameters)
    return found[0] if found else None


def publish_row(db: AsyncSession, wakeups: Wakeups | None, row: Row, kind: EventKind) -> None:
    """Publish a task's new state from the row an UPDATE returned (no extra read)."""
    bus = publishing.bus_of(wakeups)
    ended = kind == EventKind.TASK_STATE and row.state in publishing.TERMINAL
    publishing.publish_after_commit(
        db, bus, [publishing.task_event(row, kind)], [str(row.uuid)] if ended else []
    )


Recording = TypeVar("Recording")


async def refusal(recording: Awaitable[Recording]) -> Recording | DomainError:
    """What a report recorded, or the refusal that recorded nothing for it."""
    try:
        return await recording
    except DomainError as exc:
        return exc
