"""Reading tasks: visibility, filters as SQL, stable pages, and rows as wire Structs (T5).

Every read and every filtered write (cancel-many) goes through :func:`filter_conditions`, so
"which tasks may this caller see or change" is decided in one place: with a group, the
caller needs the role in it (404 for non-members, 403 for a role too low); without one, the
scope is every group where the caller has that role (Mitosis admins: all groups) — that is
:func:`readable_scope`, which also picks the dependents of a task that ``get`` may show.
"""

from __future__ import annotations

import operator
import uuid

import msgspec
from sqlalchemy import ColumnElement, Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from mitosis_sdk.schemas import (
    AttemptInfo,
    Dependency,
    DependencyCondition,
    Resource,
    Role,
    TaskFilter,
    TaskInfo,
    TaskPage,
    TaskQuery,
    TaskState,
    parse_comparison,
)
from mitosis_server.db.models import (
    Group,
    Membership,
    Task,
    TaskAttempt,
    TaskDependency,
    TaskLabel,
    TaskTag,
    User,
    Worker,
)
from mitosis_server.errors import forbidden, invalid, not_found
from mitosis_server.services import task_order
from mitosis_server.services.auth import Principal
from mitosis_server.services.groups import require_role

# How many dependents ``get`` lists (the reply also says how many there are in all).
MAX_DEPENDENTS = 100

_OPERATORS = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def hidden_task(task_uuid: uuid.UUID) -> Exception:
    # Non-members learn nothing about another group's task, not even that it exists.
    return not_found(f"task {task_uuid} (or you cannot see it)")


def roles_at_least(needed: Role) -> list[str]:
    return [role.value for role in Role if role.allows(needed)]


async def group_role(db: AsyncSession, principal: Principal, group_id: int) -> Role | None:
    if principal.is_admin:
        return Role.ADMIN
    role = await db.scalar(
        select(Membership.role).where(
            Membership.group_id == group_id, Membership.user_id == principal.user_id
        )
    )
    return Role(role) if role else None


async def require_task_role(
    db: AsyncSession, principal: Principal, task_uuid: uuid.UUID, group_id: int, needed: Role
) -> None:
    """404 when the caller cannot see the task's group, 403 when the role is too low."""
    role = await group_role(db, principal, group_id)
    if role is None:
        raise hidden_task(task_uuid)
    if not role.allows(needed):
        raise forbidden(f"you have role {role} in this task's group; this needs {needed}")


def readable_scope(principal: Principal, needed: Role) -> list[ColumnElement[bool]]:
    """Conditions keeping the tasks of groups where the caller has ``needed`` (none for
    Mitosis admins: every group)."""
    if principal.is_admin:
        return []
    return [
        Task.group_id.in_(
            select(Membership.group_id).where(
                Membership.user_id == principal.user_id,
                Membership.role.in_(roles_at_least(needed)),
            )
        )
    ]


def _comparison(column, text: str, field: str) -> ColumnElement[bool]:
    try:
        op, number = parse_comparison(text)
    except ValueError as exc:
        raise invalid(field, str(exc)) from None
    return _OPERATORS[op](column, number)


def _contains_all(task_id, value_column, values: list[str]) -> list[ColumnElement[bool]]:
    # ``id IN (ids having the value)``: the (value, task_id) index drives the lookup, so a rare
    # label is found without walking every task in scope.
    return [Task.id.in_(select(task_id).where(value_column == value)) for value in values]


async def filter_conditions(
    db: AsyncSession, principal: Principal, f: TaskFilter, needed: Role
) -> list[ColumnElement[bool]]:
    """SQL conditions over ``tasks`` for a filter, scoped to groups where the caller has
    ``needed`` (404/403 for a named group the caller cannot use)."""
    conditions: list[ColumnElement[bool]] = []
    if f.group is not None:
        group, _ = await require_role(db, principal, f.group, needed)
        conditions.append(Task.group_id == group.id)
    else:
        conditions += readable_scope(principal, needed)
    if f.creators:
        conditions.append(Task.creator_id.in_(select(User.id).where(User.name.in_(f.creators))))
    if f.states:
        conditions.append(Task.state.in_([s.value for s in f.states]))
    conditions += _contains_all(TaskTag.task_id, TaskTag.tag, f.tags)
    conditions += _contains_all(TaskLabel.task_id, TaskLabel.label, f.labels)
    if f.exit_code is not None:
        conditions.append(_comparison(Task.exit_code, f.exit_code, "exit_code"))
    if f.priority is not None:
        conditions.append(_comparison(Task.priority, f.priority, "priority"))
    if f.worker is not None:
        conditions.append(
            Task.worker_id == select(Worker.id).where(Worker.uuid == f.worker).scalar_subquery()
        )
    for column, bound, op in (
        (Task.created_at, f.created_after, operator.ge),
        (Task.created_at, f.created_before, operator.lt),
        (Task.finished_at, f.finished_after, operator.ge),
        (Task.finished_at, f.finished_before, operator.lt),
    ):
        if bound is not None:
            if bound.tzinfo is None:
                raise invalid("time window", "give times with a timezone, e.g. ...Z or +02:00")
            conditions.append(op(column, bound))
    if f.text is not None:
        escaped = f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(Task.command_line.ilike(f"%{escaped}%", escape="\\"))
    if f.uuids:
        conditions.append(Task.uuid.in_(f.uuids))
    if f.array is not None:
        conditions.append(Task.array_id == f.array)
    return conditions


# --- rows as TaskInfo ---------------------------------------------------------------------

_creator = aliased(User)
_canceller = aliased(User)
_upstream = aliased(Task)
_rerun_of = aliased(Task)


def info_select() -> Select:
    """Tasks with what their TaskInfo needs besides the row; join onto it and filter."""
    held = exists().where(TaskAttempt.task_id == Task.id, TaskAttempt.ended_at.is_(None))
    return (
        select(
            Task,
            Group.name.label("group_name"),
            _creator.name.label("creator_name"),
            Worker.uuid.label("worker_uuid"),
            _canceller.name.label("cancelled_by"),
            held.label("held"),
            select(_upstream.uuid)
            .where(_upstream.id == Task.upstream_id)
            .scalar_subquery()
            .label("upstream_uuid"),
            select(_rerun_of.uuid)
            .where(_rerun_of.id == Task.rerun_of_id)
            .scalar_subquery()
            .label("rerun_of_uuid"),
        )
        .join(Group, Group.id == Task.group_id)
        .join(_creator, _creator.id == Task.creator_id)
        .outerjoin(Worker, Worker.id == Task.worker_id)
        .outerjoin(_canceller, _canceller.id == Task.cancelled_by_id)
    )


def task_info(row, *, verbose: bool, attempts: list[AttemptInfo] | None = None) -> TaskInfo:
    task: Task = row.Task
    spec = task.spec or {}
    return TaskInfo(
        uuid=task.uuid,
        group=row.group_name,
        seq=task.seq,
        creator=row.creator_name,
        state=TaskState(task.state),
        command=task.command,
        tags=task.tags,
        labels=task.labels,
        priority=task.priority,
        timeout=task.timeout,
        terminal_output=spec.get("terminal_output", False),
        created_at=task.created_at,
        attempt=task.attempt,
        max_attempts=task.max_attempts,
        retries=task.retries,
        phase=task.phase,
        reason=task.reason,
        message=task.message,
        worker=row.worker_uuid,
        exit_code=task.exit_code,
        signal=task.signal,
        started_at=task.started_at,
        finished_at=task.finished_at,
        cancelled_by=row.cancelled_by,
        cancel_pending=bool(row.held) and task.state == TaskState.CANCELLED,
        resources=msgspec.convert(spec.get("resources", []), list[Resource]),
        depends_on=msgspec.convert(spec.get("depends_on", []), list[Dependency]),
        array_id=task.array_id,
        array_index=task.array_index,
        upstream=row.upstream_uuid,
        rerun_of=row.rerun_of_uuid,
        env=spec.get("env", {}) if verbose else None,
        attempts=attempts,
        retry_delay=spec.get("retry_delay"),
        array_limit=task.array_limit,
        downstream_error=spec.get("downstream_error"),
    )


async def attempt_history(db: AsyncSession, task_id: int) -> list[AttemptInfo]:
    rows = await db.execute(
        select(TaskAttempt, Worker.uuid)
        .outerjoin(Worker, Worker.id == TaskAttempt.worker_id)
        .where(TaskAttempt.task_id == task_id)
        .order_by(TaskAttempt.attempt)
    )
    return [
        AttemptInfo(
            attempt=a.attempt,
            worker=worker,
            state=a.outcome,
            started_at=a.started_at,
            ended_at=a.ended_at,
            phase=a.phase,
            exit_code=a.exit_code,
            signal=a.signal,
            reason=a.reason,
            message=a.message,
        )
        for a, worker in rows
    ]


async def dependents(
    db: AsyncSession, principal: Principal, task_id: int
) -> tuple[list[Dependency], int]:
    """The first :data:`MAX_DEPENDENTS` tasks waiting on this one (by submission) that the
    caller may read, and how many the caller may read in all.

    One statement: the window count is taken before the limit, so a task with 10,000
    dependents costs one walk of their rows (by the ``upstream_id`` index) and a reply of
    100, not a list of 10,000. A dependent in a group the caller cannot read is neither
    listed nor counted.
    """
    rows = (
        await db.execute(
            select(Task.uuid, TaskDependency.condition, func.count().over().label("total"))
            .join(TaskDependency, TaskDependency.task_id == Task.id)
            .where(TaskDependency.upstream_id == task_id, *readable_scope(principal, Role.READ))
            .order_by(Task.id)
            .limit(MAX_DEPENDENTS)
        )
    ).all()
    listed = [Dependency(task=r.uuid, condition=DependencyCondition(r.condition)) for r in rows]
    return listed, rows[0].total if rows else 0


async def get_task(db: AsyncSession, principal: Principal, task_uuid: uuid.UUID) -> TaskInfo:
    """One task with its environment, attempt history and links both ways (needs ``read``)."""
    row = (await db.execute(info_select().where(Task.uuid == task_uuid))).one_or_none()
    if row is None:
        raise hidden_task(task_uuid)
    await require_task_role(db, principal, task_uuid, row.Task.group_id, Role.READ)
    info = task_info(row, verbose=True, attempts=await attempt_history(db, row.Task.id))
    info.downstream = list(
        await db.scalars(select(Task.uuid).where(Task.upstream_id == row.Task.id).order_by(Task.id))
    )
    info.dependents, info.dependents_total = await dependents(db, principal, row.Task.id)
    return info


# --- pages ----------------------------------------------------------------------------------


async def query_tasks(db: AsyncSession, principal: Principal, query: TaskQuery) -> TaskPage:
    """A page of tasks the caller may read, newest first by default, with the total count.

    Pages follow ``(sort key, id)`` (:mod:`~mitosis_server.services.task_order`), so the
    cursor stays valid while tasks are submitted.
    """
    conditions = await filter_conditions(db, principal, query, Role.READ)
    total = await db.scalar(select(func.count()).select_from(Task).where(*conditions))
    keys = task_order.page_keys(query, conditions)
    rows = (
        await db.execute(
            info_select()
            .add_columns(*(column for column in keys.c if column.name != "id"))
            .join(keys, keys.c.id == Task.id)
            .order_by(*task_order.page_order(keys, query))
        )
    ).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return TaskPage(
        tasks=[task_info(r, verbose=query.verbose) for r in rows],
        total=total,
        next_cursor=task_order.encode_cursor(query, rows[-1]) if more else None,
    )
