"""Taking tasks: the atomic claim, fair between groups (FEATURES S2, S3, S6, T2 ``%N``).

A claim is ``WITH claim AS MATERIALIZED (SELECT … LIMIT n FOR UPDATE SKIP LOCKED) UPDATE
tasks … FROM claim … RETURNING``: no task is taken twice, by any number of workers or
coordinator replicas (S3). The caller updates the worker's row first, which serialises
claims of one worker, so its slots are never overbooked. The statements are built once with
bound parameters (the claim is the hot path; only its parameters change) and run on the
session's connection, past the ORM. On PostgreSQL the claim also opens the attempt rows of
what it took, in a data-modifying ``WITH`` of the same statement: taking tasks is one round
trip, the idle worker's latency path included.

Fairness (S6) is round-robin between groups, decided inside the claim statement itself:
among the groups the worker may run that have a task it may take at the best priority on
offer, the group whose latest task *started* longest ago (or never) goes first, its oldest
tasks at that priority are taken, and only if it has fewer than ``n`` of them does a plain
claim (priority, then age: S2) fill the rest, in the same statement. Why this rule:

* it needs no state of its own: "when did this group last get a task" is ``max(started_at)``
  over its tasks (an index lookup), committed data every coordinator sees alike, so there
  is no counter row for concurrent claims to queue on;
* a group that floods the queue gets a turn after every other group with work, however
  many tasks it queued, and a group that just arrived goes first: group A's 1,000 tasks
  cannot delay group B's first task by more than one claim;
* priority still wins: the turn only orders groups at the same (best) priority;
* it costs a few index probes per group the worker serves, never a scan of the queue.

Round-robin is per claim: a worker taking 8 at a time takes them from the group whose turn
it is (if it has 8), and the next claim serves the next group.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    Select,
    Subquery,
    Update,
    Uuid,
    bindparam,
    case,
    false,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.selectable import CTE

from mitosis_sdk.schemas import Assignment, Resource, TaskState
from mitosis_server.db import driver
from mitosis_server.db.dialects import bulk_insert, claim_candidates, seconds_after
from mitosis_server.db.models import Group, Task, TaskAttempt, User, UTCDateTime, WorkerGrant
from mitosis_server.services.scheduling import (
    IS_READY,
    IS_RUNNING,
    OPEN,
    RUN_ROLES,
    claimable,
    match_conditions,
    may_take,
)

WORKER = bindparam("worker_id", type_=BigInteger)
ATTEMPT_COLUMNS = ("task_id", "attempt", "worker_id", "outcome", "started_at")
NOW = bindparam("now", type_=UTCDateTime)
LIMIT = bindparam("limit", type_=Integer)  # how many tasks the claim may take


def _takeable(*extra) -> list:
    """Ready tasks of unthrottled arrays (or none) the worker may take now."""
    return [IS_READY, Task.array_limit.is_(None), claimable(NOW), may_take(WORKER), *extra]


def _fair_turn() -> tuple[Any, Any]:
    """(the best priority on offer to the worker, the group whose turn it is at it).

    Both walk the worker's grants, each group's ready tasks in index order
    (``ix_tasks_ready_group``) up to the first the worker may take, so a claim costs a few
    index probes per group however long the queue. (Asked as "the best takeable task of
    all", the planner joined the grants in and sorted every ready task of their groups: a
    claim cost grew with the queue, 1,500 heap fetches each with 3,000 tasks waiting.)"""
    granted = aliased(WorkerGrant)
    best_of_group = (
        select(Task.priority)
        .where(
            IS_READY,
            Task.group_id == granted.group_id,
            Task.array_limit.is_(None),
            claimable(NOW),
            match_conditions(WORKER)["tags"],
        )
        .order_by(Task.priority.desc(), Task.id)
        .limit(1)
        .scalar_subquery()
    )
    top = (
        select(func.max(best_of_group))
        .where(granted.worker_id == WORKER, granted.role.in_(RUN_ROLES))
        .scalar_subquery()
    )
    head = (
        select(Task.id)
        .where(
            IS_READY,
            Task.group_id == WorkerGrant.group_id,
            Task.priority == top,
            Task.array_limit.is_(None),
            claimable(NOW),
            match_conditions(WORKER)["tags"],
        )
        .order_by(Task.id)
        .limit(1)
        .scalar_subquery()
    )
    last_started = (
        select(func.max(Task.started_at))
        .where(Task.group_id == WorkerGrant.group_id, Task.started_at.is_not(None))
        .scalar_subquery()
    )
    turn = (
        select(WorkerGrant.group_id)
        .where(WorkerGrant.worker_id == WORKER, WorkerGrant.role.in_(RUN_ROLES), head.is_not(None))
        .order_by(last_started.asc().nulls_first(), head)
        .limit(1)
        .scalar_subquery()
    )
    return top, turn


def _assignment_columns() -> tuple:
    """What the worker needs of a task it takes (see :func:`assignments`)."""
    return (
        Task.id,
        Task.uuid,
        Task.attempt,
        Task.seq,
        Task.priority,
        Task.command,
        Task.spec,
        Task.timeout,
        Task.array_index,
        # SQLite prints RETURNING columns unqualified: each subquery names only columns its
        # own table lacks (group_id, creator_id), which resolve to the outer row.
        select(Group.name).where(Group.id == Task.group_id).scalar_subquery().label("group_name"),
        select(User.name).where(User.id == Task.creator_id).scalar_subquery().label("creator_name"),
        Task.upstream_id,
    )


def _best_first(where: list, limit: Any, name: str) -> CTE:
    """Ready tasks matching ``where``, best first (S2), locked for the claim."""
    ordered = select(Task.id).where(*where).order_by(Task.priority.desc(), Task.id)
    return claim_candidates(ordered.limit(limit), Task, name=name)


def _fair_then_plain() -> Subquery:
    """The group whose turn it is at the best priority (S6), then -- only for what it
    leaves of the ``limit`` -- every group in S2 order, the first ones passed over."""
    top, turn = _fair_turn()
    fair = _best_first(_takeable(Task.group_id == turn, Task.priority == top), LIMIT, "fair")
    left = LIMIT - select(func.count()).select_from(fair).scalar_subquery()
    plain = _best_first(_takeable(Task.id.not_in(select(fair.c.id))), left, "plain")
    return union_all(select(fair.c.id), select(plain.c.id)).subquery("taken")


@functools.cache
def _claim_statement(kind: str, opens_attempts: bool) -> Update | Select:
    """The claim; ``kind`` picks the candidates: ``fair`` (the group whose turn it is, at
    the best priority, then S2 order over every group), ``throttled`` (within one throttled
    array, whose head row the caller has locked). ``opens_attempts``: the statement also
    inserts the attempt rows (PostgreSQL's data-modifying ``WITH``; SQLite has none)."""
    if kind == "fair":
        candidates = _fair_then_plain()
    else:
        array = Task.array_id == bindparam("claim_array", type_=Uuid)
        where = [IS_READY, array, claimable(NOW), may_take(WORKER)]
        candidates = _best_first(where, LIMIT, "claim")
    claim = (
        update(Task)
        .where(Task.id == candidates.c.id, IS_READY)
        .values(
            state=TaskState.RUNNING.value,
            worker_id=WORKER,
            attempt=Task.attempt + 1,
            started_at=NOW,
            deadline_at=seconds_after(NOW, Task.timeout + bindparam("margin", type_=Float)),
            phase=None,
        )
        .returning(*_assignment_columns())
    )
    if not opens_attempts:  # SQLite: its RETURNING cannot hold the check, so "maybe"
        return claim.returning(literal(True).label("throttled_waiting"))
    claimed = claim.cte("claimed")
    opened = select(claimed.c.id, claimed.c.attempt, WORKER, literal(OPEN), NOW)
    opening = insert(TaskAttempt).from_select(ATTEMPT_COLUMNS, opened)
    return select(claimed, _throttled_waiting(claimed)).add_cte(opening.cte("opened"))


def _throttled_waiting(claimed: Any) -> Any:
    """Whether a throttled array (``%N``) has a ready task the worker may take now, asked
    only when the claim took fewer tasks than it could (``CASE`` leaves the look unrun
    otherwise, and the look reads every ready task of the worker's groups when the planner
    has no better path). Every claimed row carries it, so a short claim knows without
    another statement whether the throttled claim is worth its locks (the idle worker's
    latency path: one task arrives, two slots ask)."""
    short = select(func.count()).select_from(claimed).scalar_subquery() < LIMIT
    waiting = select(Task.id).where(*_throttled_ready()).correlate(None).exists()
    return case((short, waiting), else_=false()).label("throttled_waiting")


async def _claim(db: AsyncSession, kind: str, parameters: dict) -> list:
    opens_attempts = driver.uses_driver(db.bind)
    return await driver.rows(db, _claim_statement(kind, opens_attempts), parameters)


@functools.cache
def takeable_statement() -> Select:
    """A ready task the worker may take now, if any (a throttled array's too)."""
    return select(Task.id).where(IS_READY, claimable(NOW), may_take(WORKER)).limit(1)


async def claim_tasks(
    db: AsyncSession, worker_id: int, limit: int, now: datetime, margin: float
) -> list[Assignment]:
    """Take up to ``limit`` ready tasks the worker may run: the group whose turn it is
    first (S6), then best first (S2), atomically (S3)."""
    if limit <= 0:
        return []
    parameters = {"worker_id": worker_id, "limit": limit, "now": now, "margin": margin}
    rows = await _claim(db, "fair", parameters)
    if len(rows) < limit and (not rows or rows[0].throttled_waiting):
        rows += await _claim_throttled(db, worker_id, limit - len(rows), now, margin)
    if not rows:
        return []
    if not driver.uses_driver(db.bind):  # PostgreSQL's claim opened them already
        attempts = [(r.id, r.attempt, worker_id, OPEN, now) for r in rows]
        await bulk_insert(db, TaskAttempt.__table__, ATTEMPT_COLUMNS, attempts)
    return await assignments(db, rows)


async def assignments(db: AsyncSession, rows: list) -> list[Assignment]:
    """Wire views of claimed task rows (the claim's RETURNING columns), best first."""
    rows = sorted(rows, key=lambda r: (-r.priority, r.id))
    upstream_ids = {r.upstream_id for r in rows if r.upstream_id is not None}
    upstreams = dict(
        (await db.execute(select(Task.id, Task.uuid).where(Task.id.in_(upstream_ids)))).all()
        if upstream_ids
        else []
    )
    return [
        Assignment(
            task=r.uuid,
            attempt=r.attempt,
            group=r.group_name,
            seq=r.seq,
            creator=r.creator_name,
            command=r.command,
            env=r.spec.get("env", {}),
            timeout=r.timeout,
            terminal_output=r.spec.get("terminal_output", False),
            resources=msgspec.convert(r.spec.get("resources", []), list[Resource]),
            array_index=r.array_index,
            upstream=upstreams.get(r.upstream_id),
        )
        for r in rows
    ]


async def held_assignments(db: AsyncSession, task_ids: list[int]) -> list[Assignment]:
    """The assignments of attempts a worker already holds (to deliver them again)."""
    if not task_ids:
        return []
    rows = await db.execute(select(*_assignment_columns()).where(Task.id.in_(task_ids)))
    return await assignments(db, list(rows))


@functools.cache
def _throttled_arrays_statement() -> Select:
    """Throttled arrays (``%N``) with a ready task the worker may take now."""
    return (
        select(Task.array_id, Task.array_limit)
        .where(*_throttled_ready())
        .group_by(Task.array_id, Task.array_limit)
        .limit(16)
    )


def _throttled_ready() -> list:
    """Ready tasks of throttled arrays the worker may take now."""
    return [IS_READY, Task.array_limit.is_not(None), claimable(NOW), may_take(WORKER)]


async def _claim_throttled(
    db: AsyncSession, worker_id: int, limit: int, now: datetime, margin: float
) -> list:
    """Claim from throttled arrays (``%N``): never more than N of an array running. The
    array's first task row is locked (``FOR UPDATE``, waiting) while its running tasks are
    counted and the claim runs, so concurrent claims of one array take turns on PostgreSQL;
    SQLite's single writer serialises them anyway.

    Asking which arrays have work is on every claim that found less than it wanted (an
    idle worker's, the latency path): a statement built once, on the driver (through the
    ORM it cost 2 ms, most of it compiling)."""
    found = await driver.rows(
        db, _throttled_arrays_statement(), {"worker_id": worker_id, "now": now}
    )
    arrays = [(row.array_id, row.array_limit) for row in found]
    rows: list = []
    for array_id, cap in arrays:
        if limit <= 0:
            break
        await db.execute(
            select(Task.id)
            .where(Task.array_id == array_id)
            .order_by(Task.id)
            .limit(1)
            .with_for_update()
        )
        running = await db.scalar(select(func.count()).where(Task.array_id == array_id, IS_RUNNING))
        take = min(limit, cap - running)
        if take <= 0:
            continue
        parameters = {
            "worker_id": worker_id,
            "limit": take,
            "now": now,
            "margin": margin,
            "claim_array": array_id,
        }
        claimed = await _claim(db, "throttled", parameters)
        rows += claimed
        limit -= len(claimed)
    return rows
