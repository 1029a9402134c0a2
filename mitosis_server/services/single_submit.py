"""One task on its own, as the API's single submit takes it (FEATURES T1, T2, T12).

The commonest submission -- one spec, no dependencies, no workflow columns -- is the one a
script sends in a loop, so on PostgreSQL it skips the general path of ``submissions`` and
its ORM session: three statements on asyncpg itself, each its own transaction. Reserve a
number where the caller may write, insert the task with its tag and label rows in one
statement (so no worker sees it half-made), and ask the claim's S1 rule whether any live
worker could take it, for the warning. What it does not take -- dependencies, SQLite, a
group the caller may not write to -- goes the general way, which says why.

The third question has the same answer for every task of a group with the same tags, and a
script submitting in a loop asks it hundreds of times a second: a yes is remembered for
``RUNNABLE_FOR`` seconds (:class:`RecentlyRunnable`), which leaves two statements per submit.
All a remembered yes can miss is a worker that went away within that second, and a worker's
loss is itself noticed only after ``heartbeat_timeout``; a no is never remembered, so a task
no worker could take is always warned about.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Iterable

from sqlalchemy import String, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mitosis_sdk.schemas import Role, TaskSpec, TaskState, TaskSubmitted
from mitosis_server.db import driver
from mitosis_server.db.dialects import without_flush_wait
from mitosis_server.db.engine import reading, transaction
from mitosis_server.db.models import Group, Membership, Task, TaskLabel, TaskTag, utcnow
from mitosis_server.services import explain
from mitosis_server.services.auth import Principal
from mitosis_server.services.submissions import (
    NO_EXTRA,
    TASK_COLUMNS,
    announce,
    spec_values,
    submit_task,
)
from mitosis_server.services.task_queries import roles_at_least
from mitosis_server.services.wakeups import Wakeups

RUNNABLE_FOR = 1.0  # seconds a "some live worker could take it" is remembered
_REMEMBERED_AT_MOST = 4096  # (group, tags) answers; all are forgotten beyond


class RecentlyRunnable:
    """Which (group, tags) some live worker could take lately, per coordinator process."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._until: dict[tuple[int, frozenset[str]], float] = {}

    def knows(self, group_id: int, tags: Iterable[str]) -> bool:
        until = self._until.get((group_id, frozenset(tags)))
        return until is not None and until > self._clock()

    def __len__(self) -> int:
        return len(self._until)

    def learn(self, group_id: int, tags: Iterable[str]) -> None:
        if len(self._until) >= _REMEMBERED_AT_MOST:
            self._until.clear()
        self._until[(group_id, frozenset(tags))] = self._clock() + RUNNABLE_FOR


async def submit_one(
    sessions: async_sessionmaker[AsyncSession],
    principal: Principal,
    spec: TaskSpec,
    *,
    max_attempts: int,
    wakeups: Wakeups | None = None,
    runnable: RecentlyRunnable | None = None,
) -> TaskSubmitted:
    """One task as the API's single submit takes it: on PostgreSQL, without dependencies,
    straight on the driver with no ORM session at all (it would only be opened, committed
    empty and closed: a tenth of the request), the warning's question skipped while
    ``runnable`` knows the answer; otherwise :func:`submit_task` in a transaction of its
    own."""
    engine = sessions.kw["bind"]
    if not spec.depends_on and driver.uses_driver(engine):
        result = await _submit_on_driver(sessions, principal, spec, max_attempts, runnable)
        if result is not None:  # committed: announce it now
            await announce(wakeups, [result])
            return result
    async with transaction(sessions) as db:
        return await submit_task(db, principal, spec, max_attempts=max_attempts, wakeups=wakeups)


@functools.cache
def _reserve_where_writable():
    """One number of the named group, when the caller is an admin or may write there; the
    group row is locked for this statement only, its commit not waiting for the WAL flush
    (``dialects.reserve_numbers`` says why that is safe)."""
    may_write = exists().where(
        Membership.group_id == Group.id,
        Membership.user_id == bindparam("user_id"),
        Membership.role.in_(roles_at_least(Role.WRITE)),
    )
    reserve = (
        update(Group)
        .where(Group.name == bindparam("name"), or_(bindparam("is_admin"), may_write))
        .values(task_seq=Group.task_seq + 1)
        .returning(Group.id, Group.task_seq)
    )
    return without_flush_wait(reserve)


@functools.cache
def _insert_with_rows():
    """The task, its tag rows and its label rows: one statement, so one commit."""
    task = insert(Task).values({c: bindparam(c) for c in TASK_COLUMNS}).returning(Task.id)
    task = task.cte("new_task")

    def rows_of(table, column: str, name: str):
        values = func.unnest(bindparam(name, type_=ARRAY(String))).table_valued("value")
        values = values.render_derived(name=name)
        selected = select(task.c.id, values.c.value)
        return insert(table).from_select(["task_id", column], selected).cte(f"new_{name}")

    return (
        select(task.c.id)
        .add_cte(rows_of(TaskTag, "tag", "tag_rows"))
        .add_cte(rows_of(TaskLabel, "label", "label_rows"))
    )


async def _submit_on_driver(
    sessions: async_sessionmaker[AsyncSession],
    principal: Principal,
    spec: TaskSpec,
    max_attempts: int,
    runnable: RecentlyRunnable | None,
) -> TaskSubmitted | None:
    """The submission as committed, or None when the caller may not write to the group."""
    group = spec.group or principal.username
    async with driver.autocommit(sessions.kw["bind"]) as connection:
        reserved = await connection.fetchrow(
            _reserve_where_writable(),
            name=group,
            user_id=principal.user_id,
            is_admin=principal.is_admin,
        )
        if reserved is None:
            return None
        group_id, seq = reserved
        now, task_uuid = utcnow(), uuid.uuid4()
        values = spec_values(spec, max_attempts, TaskState.READY, None, now)
        row = (*values, task_uuid, group_id, seq, principal.user_id, now, *NO_EXTRA)
        await connection.fetchrow(
            _insert_with_rows(),
            **dict(zip(TASK_COLUMNS, row, strict=True)),
            tag_rows=spec.tags,
            label_rows=spec.labels,
        )
        could_run = runnable is not None and runnable.knows(group_id, spec.tags)
        if not could_run:
            found = await connection.fetchrow(explain.could_run_statement(), task_uuid=task_uuid)
            could_run = found[0]
    result = TaskSubmitted(uuid=task_uuid, group=group, seq=seq, state=TaskState.READY)
    if not could_run:
        async with reading(sessions) as db:
            result.warning = await explain.submit_warning(db, task_uuid)
    elif runnable is not None:
        runnable.learn(group_id, spec.tags)
    return result
