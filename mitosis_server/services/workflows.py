"""Dependencies between tasks (FEATURES T6), evaluated on the coordinator from committed state.

A ``pending`` task waits for every row of ``task_dependencies`` naming it. A condition is
*met* or *never met* as a function of the upstream's state and phase only:

=============  ===============================================  ==========================
condition      met when the upstream                             never met when it
=============  ===============================================  ==========================
``after``      reached phase ``spawned`` (or ended in any way)    —
``afterok``    completed                                          failed or was cancelled
``afternotok`` failed or was cancelled                            completed
``afterany``   ended (completed, failed, cancelled)               —
=============  ===============================================  ==========================

:func:`settle` runs in the transaction that moved an upstream (report, phase, cancel,
liveness): it fails the dependents that can never run (reason
``dependency_never_satisfied``, naming the dependency), then releases those whose
dependencies are all met. Both are set-based UPDATEs over the dependents of the tasks that
moved, so one upstream with 10,000 dependents costs a handful of statements. A failure is a
transition too, so it repeats for the failed tasks' dependents, down to the end of the chain
(each task fails once, and dependencies cannot form a cycle, so it ends).
Every task it moves is noted for publication (``publishing.note_tasks``), so the caller's
publish after commit carries the dependents too (E1).

A task being submitted gets its state from the same two conditions, evaluated in SQL on its
share-locked upstreams (:func:`lock_upstreams`, :func:`initial_state`): it is inserted
``ready``, ``pending`` or already ``failed``, with no settling pass over the new rows.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    Select,
    and_,
    any_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from mitosis_sdk.schemas import (
    DependencyCondition,
    Role,
    TaskReason,
    TaskSpec,
    TaskState,
)
from mitosis_server.db import driver
from mitosis_server.db.dialects import bulk_insert
from mitosis_server.db.models import Group, Task, TaskDependency
from mitosis_server.errors import DomainError, invalid
from mitosis_server.services import publishing
from mitosis_server.services.auth import Principal
from mitosis_server.services.task_queries import group_role, roles_at_least

CHUNK = 5000  # ids per IN list (SQLite's bound-parameter limit)
ENDED = [s.value for s in (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)]
NOT_OK = [TaskState.FAILED.value, TaskState.CANCELLED.value]
STARTED_PHASES = ["spawned", "exited", "uploading", "committed"]

_up = aliased(Task, name="upstream")


def met(condition, upstream=_up):
    """The SQL condition "this dependency row is met" for the upstream row ``upstream``."""
    return or_(
        and_(
            condition == DependencyCondition.AFTER.value,
            or_(upstream.state.in_(ENDED), func.coalesce(upstream.phase, "").in_(STARTED_PHASES)),
        ),
        and_(condition == DependencyCondition.AFTEROK.value, upstream.state == "completed"),
        and_(condition == DependencyCondition.AFTERNOTOK.value, upstream.state.in_(NOT_OK)),
        and_(condition == DependencyCondition.AFTERANY.value, upstream.state.in_(ENDED)),
    )


def never_met(condition, upstream=_up):
    return or_(
        and_(condition == DependencyCondition.AFTEROK.value, upstream.state.in_(NOT_OK)),
        and_(condition == DependencyCondition.AFTERNOTOK.value, upstream.state == "completed"),
    )


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


async def check_dependencies(
    db: AsyncSession | AsyncConnection, principal: Principal, specs: list[TaskSpec]
) -> dict[uuid.UUID, int | DomainError]:
    """Map every upstream UUID named by ``specs`` to its task id, or to the error that
    refuses it (missing, or in a group the caller cannot read: both look the same)."""
    wanted = {d.task for spec in specs for d in spec.depends_on}
    if not wanted:
        return {}
    rows = {
        r.uuid: r
        for r in await db.execute(
            select(Task.id, Task.uuid, Task.group_id).where(Task.uuid.in_(wanted))
        )
    }
    readable: dict[int, bool] = {}
    found: dict[uuid.UUID, int | DomainError] = {}
    for task_uuid in wanted:
        row = rows.get(task_uuid)
        if row is not None and row.group_id not in readable:
            role = await group_role(db, principal, row.group_id)
            readable[row.group_id] = role is not None and role.value in roles_at_least(Role.READ)
        if row is None or not readable[row.group_id]:
            found[task_uuid] = invalid(
                "depends_on", f"task {task_uuid} does not exist or you cannot read it"
            )
        else:
            found[task_uuid] = row.id
    return found


def dependency_error(spec: TaskSpec, found: dict[uuid.UUID, int | DomainError]):
    for dependency in spec.depends_on:
        target = found.get(dependency.task)
        if isinstance(target, DomainError):
            return target
    return None


async def add_dependencies(
    db: AsyncSession, rows: list[tuple[int, TaskSpec]], found: dict[uuid.UUID, int | DomainError]
) -> None:
    """Insert the dependency rows of new tasks. New tasks can only name tasks that
    already exist, so no cycle can form (dependencies are never edited afterwards)."""
    values = [
        (task_id, found[d.task], d.condition.value)
        for task_id, spec in rows
        for d in spec.depends_on
    ]
    columns = ("task_id", "upstream_id", "condition")
    await bulk_insert(db, TaskDependency.__table__, columns, values)


def _message_for(upstream_uuid, condition: str, upstream_state: str) -> str:
    return f"dependency {upstream_uuid} ({condition}) can never be met: it {upstream_state}"


async def _fail_never_met(db: AsyncSession, candidates, now: datetime) -> list[tuple[int, int]]:
    """Fail pending candidates with a dependency that can never be met; (id, group id)."""
    blocked = (
        await db.execute(
            select(Task.id, _up.uuid, TaskDependency.condition, _up.state)
            .join(TaskDependency, TaskDependency.task_id == Task.id)
            .join(_up, _up.id == TaskDependency.upstream_id)
            .where(candidates, Task.state == "pending", never_met(TaskDependency.condition))
        )
    ).all()
    if not blocked:
        return []
    by_message: dict[str, list[int]] = {}
    seen: set[int] = set()
    for task_id, up_uuid, condition, up_state in blocked:
        if task_id not in seen:
            seen.add(task_id)
            by_message.setdefault(_message_for(up_uuid, condition, up_state), []).append(task_id)
    failed: list[tuple[int, int]] = []
    for message, ids in by_message.items():
        for chunk in _chunks(ids):
            failed += (
                await db.execute(
                    update(Task)
                    .execution_options(synchronize_session=False)
                    .where(Task.id.in_(chunk), Task.state == "pending")
                    .values(
                        state=TaskState.FAILED.value,
                        reason=TaskReason.DEPENDENCY_NEVER_SATISFIED.value,
                        message=message,
                        finished_at=now,
                    )
                    .returning(Task.id, Task.group_id)
                )
            ).all()
    return [tuple(r) for r in failed]


async def _release_met(db: AsyncSession, candidates) -> list[tuple[int, int]]:
    """Pending candidates whose dependencies are all met become ready; (id, group id)."""
    unmet = exists().where(
        TaskDependency.task_id == Task.id,
        _up.id == TaskDependency.upstream_id,
        ~met(TaskDependency.condition),
    )
    rows = await db.execute(
        update(Task)
        .execution_options(synchronize_session=False)
        .where(candidates, Task.state == "pending", ~unmet)
        .values(state=TaskState.READY.value)
        .returning(Task.id, Task.group_id)
    )
    return [tuple(r) for r in rows]


def dependents_of(upstream_ids: list[int]):
    return Task.id.in_(
        select(TaskDependency.task_id).where(TaskDependency.upstream_id.in_(upstream_ids))
    )


async def with_dependents(db: AsyncSession, task_ids: list[int]) -> list[int]:
    """Which of these tasks (that just moved) have dependents, and so need :func:`settle`.

    Asked in a statement of its own after the move's UPDATE, never inside it: a submission
    that share-locked one of them (:func:`lock_upstreams`) made that UPDATE wait for its
    commit, but on PostgreSQL the UPDATE reads with the snapshot it began with, which lacks
    the new dependency rows; a statement begun after the wait sees them."""
    if not task_ids:
        return []
    if driver.uses_driver(db.bind):  # one array, whatever the number: a reporting fetch's path
        rows = await driver.rows(db, _dependents_statement(True), {"ids": task_ids})
        return [row.upstream_id for row in rows]
    found: list[int] = []
    for chunk in _chunks(task_ids):
        found += await db.scalars(_dependents_statement(False), {"ids": chunk})
    return found


@functools.cache
def _dependents_statement(together: bool) -> Select:
    """The ids among ``ids`` that some task depends on; ``together``: ``ids`` is one
    PostgreSQL array, otherwise an ``IN`` list (SQLite's parameter limit: in chunks)."""
    upstream = TaskDependency.upstream_id
    if together:
        where = upstream == any_(bindparam("ids", type_=ARRAY(BigInteger)))
    else:
        where = upstream.in_(bindparam("ids", expanding=True))
    return select(upstream).where(where).distinct()


async def settle(
    db: AsyncSession, now: datetime, *, upstream_ids: Iterable[int]
) -> tuple[set[int], list[int]]:
    """Re-evaluate the pending dependents of ``upstream_ids`` (tasks that just moved).
    Returns (ids of groups that got ready tasks — wake their workers after commit, ids of
    every task that changed)."""
    ready_groups: set[int] = set()
    changed: list[int] = []
    upstream_ids = list(upstream_ids)
    while upstream_ids:
        failed: list[int] = []
        # In chunks: the drivers bind at most 32,767 values (a cancel by filter can move
        # more). Every upstream has moved already, so a dependent whose upstreams fall in
        # two chunks is judged on all of them either way.
        for chunk in _chunks(upstream_ids):
            scope = dependents_of(chunk)
            failed += [task_id for task_id, _ in await _fail_never_met(db, scope, now)]
            released = await _release_met(db, scope)
            ready_groups.update(group_id for _, group_id in released)
            changed += [task_id for task_id, _ in released]
        upstream_ids = failed
        changed += upstream_ids
    publishing.note_tasks(db, changed)
    return ready_groups, changed


class Upstream(NamedTuple):
    """An upstream as a new dependent sees it: which conditions are met, which never will."""

    uuid: uuid.UUID
    state: str
    met: frozenset[str]
    never: frozenset[str]


@functools.cache
def _upstreams_statement():
    outcomes = []
    for condition in DependencyCondition:
        named = literal(condition.value)
        outcomes.append(met(named, Task).label(f"met_{condition.name}"))
        outcomes.append(never_met(named, Task).label(f"never_{condition.name}"))
    return (
        select(Task.id, Task.uuid, Task.state, *outcomes)
        .where(Task.id.in_(bindparam("ids", expanding=True)))
        .with_for_update(read=True)
    )


async def lock_upstreams(db: AsyncSession, ids: Iterable[int]) -> dict[int, Upstream]:
    """The upstreams of tasks about to be submitted, share-locked to the commit.

    The lock (``FOR SHARE``; SQLite's one writer needs none) makes a concurrent transition
    of an upstream wait for the submission's commit, so its :func:`settle` sees the new
    dependency rows; a transition that committed first is what this reads. Either way no new
    task is left pending on an upstream that already moved.
    """
    found = {}
    for row in await db.execute(_upstreams_statement(), {"ids": sorted(set(ids))}):
        found[row.id] = Upstream(
            uuid=row.uuid,
            state=row.state,
            met=frozenset(c.value for c in DependencyCondition if row._mapping[f"met_{c.name}"]),
            never=frozenset(
                c.value for c in DependencyCondition if row._mapping[f"never_{c.name}"]
            ),
        )
    return found


def initial_state(
    spec: TaskSpec, found: dict[uuid.UUID, int | DomainError], upstreams: dict[int, Upstream]
) -> tuple[TaskState, str | None]:
    """A new task's state by T6: ``failed`` (with the message naming the dependency) when one
    can never be met, ``ready`` when all are met already, else ``pending``."""
    waiting = False
    for dependency in spec.depends_on:
        upstream = upstreams[found[dependency.task]]
        condition = dependency.condition.value
        if condition in upstream.never:
            return TaskState.FAILED, _message_for(upstream.uuid, condition, upstream.state)
        waiting = waiting or condition not in upstream.met
    return (TaskState.PENDING if waiting else TaskState.READY), None


async def group_names(db: AsyncSession, ids: Iterable[int]) -> list[str]:
    ids = set(ids)
    if not ids:
        return []
    return list(await db.scalars(select(Group.name).where(Group.id.in_(ids))))


async def settle_moved(
    db: AsyncSession, task_uuid: uuid.UUID, now: datetime
) -> tuple[list[str], list[uuid.UUID]]:
    """Settle the dependents of one task that moved: (groups to wake, tasks that changed)."""
    task_id = await db.scalar(select(Task.id).where(Task.uuid == task_uuid))
    if task_id is None:
        return [], []
    groups, changed = await settle(db, now, upstream_ids=[task_id])
    return await group_names(db, groups), await uuids_of(db, changed)


async def uuids_of(db: AsyncSession, ids: list[int]) -> list[uuid.UUID]:
    found: list[uuid.UUID] = []
    for chunk in _chunks(ids):
        found += list(await db.scalars(select(Task.uuid).where(Task.id.in_(chunk))))
    return found
