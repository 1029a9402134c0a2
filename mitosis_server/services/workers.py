"""Workers (FEATURES W1-W4): registration with its grant rule, the worker's own heartbeat and
unregistration, and what users see and manage.

Permission rules, each in one function here:

* grant a group (at registration or later): the caller holds ``write`` in it (admins: any);
  the registering user's personal group always gets ``admin``;
* see a worker: its creator, Mitosis admins, and members of any group with a grant on it;
* manage it (tags, labels, grants, drain, resume, shutdown): its creator, Mitosis admins,
  and members with ``admin`` role in a group holding an ``admin`` grant on it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas import (
    AttemptRef,
    Grant,
    HostFacts,
    Role,
    ShutdownMode,
    TaskReason,
    WorkerCommands,
    WorkerFilter,
    WorkerInfo,
    WorkerPage,
    WorkerQuery,
    WorkerRegister,
    WorkerRegistered,
    WorkerState,
)
from mitosis_server.db.models import (
    Group,
    Membership,
    Session,
    Task,
    TaskAttempt,
    User,
    Worker,
    WorkerGrant,
    WorkerLabel,
    WorkerTag,
    utcnow,
)
from mitosis_server.errors import conflict, forbidden, not_found
from mitosis_server.services import publishing
from mitosis_server.services.auth import Authenticator, Principal
from mitosis_server.services.dispatch import (
    commands_for,
    open_attempts,
    touch_worker,
    worker_slot,
)
from mitosis_server.services.groups import require_role
from mitosis_server.services.scheduling import REQUEUED, release_attempts, requeued_groups
from mitosis_server.services.wakeups import Wakeups, notify_after_commit

LIVE_STATES = [WorkerState.ONLINE.value, WorkerState.DRAINING.value, WorkerState.LOST.value]


def _hidden(worker_uuid: uuid.UUID) -> Exception:
    return not_found(f"worker {worker_uuid} (or you cannot see it)")


async def grantable_groups(
    db: AsyncSession, principal: Principal, grants: list[Grant]
) -> dict[int, Role]:
    """Group id → role for grants the caller may give (write in each group; 404/403)."""
    resolved: dict[int, Role] = {}
    for grant in grants:
        group, _ = await require_role(db, principal, grant.group, Role.WRITE)
        resolved[group.id] = grant.role
    return resolved


async def register_worker(
    db: AsyncSession,
    authenticator: Authenticator,
    principal: Principal,
    request: WorkerRegister,
    address: str | None,
) -> WorkerRegistered:
    """A new worker with its own token, bound to it (W1)."""
    grants = await grantable_groups(db, principal, request.grants)
    personal = await db.scalar(select(Group.id).where(Group.name == principal.username))
    if personal is not None:
        grants[personal] = Role.ADMIN
    now = utcnow()
    worker = Worker(
        uuid=uuid.uuid4(),
        creator_id=principal.user_id,
        state=WorkerState.ONLINE.value,
        drain=False,
        slots=request.slots,
        version=request.version,
        facts=_facts(request.facts),
        created_at=now,
        last_heartbeat=now,
    )
    db.add(worker)
    await db.flush()
    await replace_values(db, WorkerTag, "tag", worker.id, request.tags)
    await replace_values(db, WorkerLabel, "label", worker.id, request.labels)
    if grants:
        await db.execute(
            insert(WorkerGrant),
            [{"worker_id": worker.id, "group_id": g, "role": r.value} for g, r in grants.items()],
        )
    user = await db.get_one(User, principal.user_id)
    token, expires_at = await authenticator.open_session(
        db, user, address, worker_id=str(worker.uuid)
    )
    info = (await worker_infos(db, [worker]))[0]
    return WorkerRegistered(worker=info, token=token, token_expires_at=expires_at)


def _facts(facts: HostFacts) -> dict:
    return {f: getattr(facts, f) for f in facts.__struct_fields__ if getattr(facts, f) is not None}


async def replace_values(db: AsyncSession, table, column: str, worker_id: int, values) -> None:
    await db.execute(delete(table).where(table.worker_id == worker_id))
    if values:
        await db.execute(insert(table), [{"worker_id": worker_id, column: v} for v in values])


# --- the worker's own calls -----------------------------------------------------------------


async def heartbeat(
    db: AsyncSession,
    authenticator: Authenticator,
    principal: Principal,
    worker_uuid: uuid.UUID,
    running: list[AttemptRef],
    address: str | None,
    wakeups: Wakeups | None,
) -> WorkerCommands:
    """Record life (W2) and answer with the worker's orders; renew the worker's token when
    less than half of its lifetime is left, so a long task never outlives it."""
    slot = await worker_slot(db, await touch_worker(db, worker_uuid, utcnow(), wakeups))
    commands = commands_for(slot, running)
    left = principal.token_expires_at - datetime.now(UTC)
    if left < timedelta(seconds=authenticator.token_lifetime / 2):
        user = await db.get_one(User, principal.user_id)
        token, expires_at = await authenticator.open_session(
            db, user, address, worker_id=str(worker_uuid)
        )
        commands.token, commands.token_expires_at = token, expires_at
    return commands


async def unregister(
    db: AsyncSession, principal: Principal, worker_uuid: uuid.UUID, wakeups: Wakeups | None
) -> None:
    """The worker leaves: attempts it still holds are requeued, its token stops working."""
    worker_id = await db.scalar(
        update(Worker)
        .where(Worker.uuid == worker_uuid, Worker.state != WorkerState.STOPPED)
        .values(state=WorkerState.STOPPED.value, stopped_at=utcnow(), drain=False, shutdown=None)
        .returning(Worker.id)
    )
    if worker_id is None:
        raise conflict(f"worker {worker_uuid} has already unregistered")
    held = [attempt_id for attempt_id, *_ in await open_attempts(db, worker_id)]
    released = await release_attempts(
        db, held, utcnow(), REQUEUED, TaskReason.WORKER_STOPPED, "the worker unregistered"
    )
    await db.execute(update(Session).where(Session.id == principal.session_id).values(revoked=True))
    notify_after_commit(db, wakeups, groups=await requeued_groups(db, released))
    await publishing.workers_changed(db, wakeups, [worker_uuid])
    await publishing.tasks_changed(db, wakeups, [])  # the attempts it held, released


# --- what users see -------------------------------------------------------------------------


def _visible(principal: Principal) -> ColumnElement[bool] | None:
    if principal.is_admin:
        return None
    member_groups = select(Membership.group_id).where(Membership.user_id == principal.user_id)
    return or_(
        Worker.creator_id == principal.user_id,
        exists().where(WorkerGrant.worker_id == Worker.id, WorkerGrant.group_id.in_(member_groups)),
    )


def manageable(principal: Principal) -> ColumnElement[bool] | None:
    if principal.is_admin:
        return None
    admin_groups = select(Membership.group_id).where(
        Membership.user_id == principal.user_id, Membership.role == Role.ADMIN.value
    )
    return or_(
        Worker.creator_id == principal.user_id,
        exists().where(
            WorkerGrant.worker_id == Worker.id,
            WorkerGrant.role == Role.ADMIN.value,
            WorkerGrant.group_id.in_(admin_groups),
        ),
    )


async def worker_filter(
    db: AsyncSession, principal: Principal, f: WorkerFilter
) -> list[ColumnElement[bool]]:
    conditions = [c for c in (_visible(principal),) if c is not None]
    if f.group is not None:
        group, _ = await require_role(db, principal, f.group, Role.READ)
        conditions.append(
            exists().where(WorkerGrant.worker_id == Worker.id, WorkerGrant.group_id == group.id)
        )
    conditions += [
        exists().where(WorkerTag.worker_id == Worker.id, WorkerTag.tag == t) for t in f.tags
    ]
    conditions += [
        exists().where(WorkerLabel.worker_id == Worker.id, WorkerLabel.label == v) for v in f.labels
    ]
    states = [s.value for s in f.states] or (LIVE_STATES if not f.uuids else [])
    if states:
        conditions.append(Worker.state.in_(states))
    if f.creators:
        conditions.append(Worker.creator_id.in_(select(User.id).where(User.name.in_(f.creators))))
    if f.uuids:
        conditions.append(Worker.uuid.in_(f.uuids))
    return conditions


async def worker_infos(db: AsyncSession, workers: list[Worker]) -> list[WorkerInfo]:
    """Wire views of workers, with tags, labels, grants and running tasks in four queries."""
    ids = [w.id for w in workers]
    if not ids:
        return []

    async def grouped(statement) -> dict[int, list]:
        found: dict[int, list] = {i: [] for i in ids}
        for owner, value in await db.execute(statement):
            found[owner].append(value)
        return found

    tags = await grouped(
        select(WorkerTag.worker_id, WorkerTag.tag)
        .where(WorkerTag.worker_id.in_(ids))
        .order_by(WorkerTag.tag)
    )
    labels = await grouped(
        select(WorkerLabel.worker_id, WorkerLabel.label)
        .where(WorkerLabel.worker_id.in_(ids))
        .order_by(WorkerLabel.label)
    )
    grants: dict[int, list] = {i: [] for i in ids}
    for worker_id, name, role in await db.execute(
        select(WorkerGrant.worker_id, Group.name, WorkerGrant.role)
        .join(Group, Group.id == WorkerGrant.group_id)
        .where(WorkerGrant.worker_id.in_(ids))
        .order_by(Group.name)
    ):
        grants[worker_id].append(Grant(group=name, role=Role(role)))
    running = await grouped(
        select(TaskAttempt.worker_id, Task.uuid)
        .join(Task, Task.id == TaskAttempt.task_id)
        .where(TaskAttempt.worker_id.in_(ids), TaskAttempt.ended_at.is_(None))
        .order_by(TaskAttempt.id)
    )
    creator_ids = {w.creator_id for w in workers}
    creators = dict(
        (await db.execute(select(User.id, User.name).where(User.id.in_(creator_ids)))).all()
    )
    return [
        WorkerInfo(
            uuid=w.uuid,
            creator=creators.get(w.creator_id, ""),
            state=WorkerState(w.state),
            tags=tags[w.id],
            labels=labels[w.id],
            grants=grants[w.id],
            slots=w.slots,
            running=running[w.id],
            last_heartbeat=w.last_heartbeat,
            created_at=w.created_at,
            version=w.version,
            facts=HostFacts(**w.facts),
            shutdown=ShutdownMode(w.shutdown) if w.shutdown else None,
        )
        for w in workers
    ]


async def query_workers(
    db: AsyncSession, principal: Principal, query: WorkerQuery, heartbeat_timeout: float
) -> WorkerPage:
    """Workers the caller can see (W3); without a state filter, the registered ones."""
    conditions = await worker_filter(db, principal, query)
    total = await db.scalar(select(func.count()).select_from(Worker).where(*conditions))
    workers = list(
        await db.scalars(
            select(Worker)
            .where(*conditions)
            .order_by(Worker.id.desc())
            .offset(query.offset)
            .limit(query.limit)
        )
    )
    return WorkerPage(
        workers=await worker_infos(db, workers), total=total, heartbeat_timeout=heartbeat_timeout
    )


async def find_worker(
    db: AsyncSession, principal: Principal, worker_uuid: uuid.UUID, *, manage: bool
) -> Worker:
    visible = _visible(principal)
    worker = await db.scalar(
        select(Worker).where(
            Worker.uuid == worker_uuid, *([visible] if visible is not None else [])
        )
    )
    if worker is None:
        raise _hidden(worker_uuid)
    rule = manageable(principal)
    if manage and rule is not None:
        allowed = await db.scalar(select(exists().where(Worker.id == worker.id, rule)))
        if not allowed:
            raise forbidden(
                f"managing worker {worker_uuid} needs its creator, a Mitosis admin, or an admin"
                " of a group with an admin grant on it"
            )
    return worker


async def get_worker(db: AsyncSession, principal: Principal, worker_uuid: uuid.UUID) -> WorkerInfo:
    return (await worker_infos(db, [await find_worker(db, principal, worker_uuid, manage=False)]))[
        0
    ]
