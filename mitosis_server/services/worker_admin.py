"""Managing workers (FEATURES W4, S5): tags, labels, grants, drain, resume and shutdown.

Who may manage a worker is decided by ``workers.manageable``. Every change wakes the
worker's parked fetch, so new tags and grants apply at its next look and orders (drain,
shutdown) reach it at once instead of at its next heartbeat.
"""

from __future__ import annotations

import uuid

from sqlalchemy import case, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas import (
    Grant,
    ShutdownMode,
    WorkerFilter,
    WorkerInfo,
    WorkersShutdownReply,
    WorkerState,
)
from mitosis_server.db.models import Group, Worker, WorkerGrant, WorkerLabel, WorkerTag
from mitosis_server.errors import conflict, not_found
from mitosis_server.services import publishing
from mitosis_server.services.auth import Principal
from mitosis_server.services.wakeups import Wakeups, notify_after_commit
from mitosis_server.services.workers import (
    find_worker,
    grantable_groups,
    manageable,
    replace_values,
    worker_filter,
    worker_infos,
)


async def _managed(db: AsyncSession, principal: Principal, worker_uuid: uuid.UUID) -> Worker:
    worker = await find_worker(db, principal, worker_uuid, manage=True)
    if worker.state == WorkerState.STOPPED:
        raise conflict(f"worker {worker_uuid} has unregistered")
    return worker


async def _changed(db: AsyncSession, worker: Worker, wakeups: Wakeups | None) -> WorkerInfo:
    await db.flush()
    notify_after_commit(db, wakeups, workers=[worker.uuid])
    await publishing.workers_changed(db, wakeups, [worker.uuid])
    await db.refresh(worker)
    return (await worker_infos(db, [worker]))[0]


async def replace_tags(
    db: AsyncSession,
    principal: Principal,
    worker_uuid: uuid.UUID,
    tags: list[str],
    wakeups: Wakeups | None = None,
) -> WorkerInfo:
    """New capabilities (empty: takes tasks with any tags); they apply at the next fetch."""
    worker = await _managed(db, principal, worker_uuid)
    await replace_values(db, WorkerTag, "tag", worker.id, tags)
    return await _changed(db, worker, wakeups)


async def replace_labels(
    db: AsyncSession, principal: Principal, worker_uuid: uuid.UUID, labels: list[str]
) -> WorkerInfo:
    worker = await _managed(db, principal, worker_uuid)
    await replace_values(db, WorkerLabel, "label", worker.id, labels)
    return await _changed(db, worker, None)


async def update_grants(
    db: AsyncSession,
    principal: Principal,
    worker_uuid: uuid.UUID,
    grants: list[Grant],
    wakeups: Wakeups | None = None,
) -> WorkerInfo:
    """Add grants or change their roles; granting a group needs ``write`` in it."""
    worker = await _managed(db, principal, worker_uuid)
    roles = await grantable_groups(db, principal, grants)
    await db.execute(
        delete(WorkerGrant).where(
            WorkerGrant.worker_id == worker.id, WorkerGrant.group_id.in_(list(roles))
        )
    )
    await db.execute(
        insert(WorkerGrant),
        [{"worker_id": worker.id, "group_id": g, "role": r.value} for g, r in roles.items()],
    )
    return await _changed(db, worker, wakeups)


async def remove_grants(
    db: AsyncSession,
    principal: Principal,
    worker_uuid: uuid.UUID,
    groups: list[str],
    wakeups: Wakeups | None = None,
) -> WorkerInfo:
    """Take grants away, all or nothing (a group without a grant is a 404)."""
    worker = await _managed(db, principal, worker_uuid)
    granted = dict(
        (
            await db.execute(
                select(Group.name, Group.id)
                .join(WorkerGrant, WorkerGrant.group_id == Group.id)
                .where(WorkerGrant.worker_id == worker.id, Group.name.in_(groups))
            )
        ).all()
    )
    for name in groups:
        if name not in granted:
            raise not_found(f"a grant of group {name!r} on worker {worker_uuid}")
    await db.execute(
        delete(WorkerGrant).where(
            WorkerGrant.worker_id == worker.id, WorkerGrant.group_id.in_(granted.values())
        )
    )
    return await _changed(db, worker, wakeups)


async def drain(
    db: AsyncSession, principal: Principal, worker_uuid: uuid.UUID, wakeups: Wakeups | None = None
) -> WorkerInfo:
    """Finish running tasks, take no new ones."""
    worker = await _managed(db, principal, worker_uuid)
    worker.drain = True
    if worker.state == WorkerState.ONLINE:
        worker.state = WorkerState.DRAINING.value
    return await _changed(db, worker, wakeups)


async def resume(
    db: AsyncSession, principal: Principal, worker_uuid: uuid.UUID, wakeups: Wakeups | None = None
) -> WorkerInfo:
    """Take tasks again after a drain (not after a shutdown order)."""
    worker = await _managed(db, principal, worker_uuid)
    if worker.shutdown is not None:
        raise conflict(f"worker {worker_uuid} is shutting down ({worker.shutdown}); start anew")
    worker.drain = False
    if worker.state == WorkerState.DRAINING:
        worker.state = WorkerState.ONLINE.value
    return await _changed(db, worker, wakeups)


async def shutdown_workers(
    db: AsyncSession,
    principal: Principal,
    uuids: list[uuid.UUID],
    worker_filter_: WorkerFilter | None,
    force: bool,
    wakeups: Wakeups | None = None,
) -> WorkersShutdownReply:
    """Order workers to stop: ``graceful`` drains then exits, ``force`` kills running tasks
    (they are requeued when the worker unregisters, or when it is declared lost). A list
    must be manageable in full (else nothing changes); a filter acts on the manageable
    workers it matches."""
    if worker_filter_ is not None:
        conditions = await worker_filter(db, principal, worker_filter_)
        rule = manageable(principal)
        ids = list(
            await db.scalars(
                select(Worker.id).where(
                    *conditions,
                    *([rule] if rule is not None else []),
                    Worker.state != WorkerState.STOPPED,
                )
            )
        )
    else:
        ids = []
        for worker_uuid in dict.fromkeys(uuids):
            ids.append((await _managed(db, principal, worker_uuid)).id)
    if not ids:
        return WorkersShutdownReply(workers=[])
    mode = ShutdownMode.FORCE if force else ShutdownMode.GRACEFUL
    rows = await db.scalars(
        update(Worker)
        .where(Worker.id.in_(ids), Worker.state != WorkerState.STOPPED)
        .values(
            drain=True,
            # A forced order is never softened by a later graceful one.
            shutdown=case(
                (Worker.shutdown == ShutdownMode.FORCE, ShutdownMode.FORCE.value),
                else_=mode.value,
            ),
            state=case(
                (Worker.state == WorkerState.ONLINE, WorkerState.DRAINING.value),
                else_=Worker.state,
            ),
        )
        .returning(Worker.uuid)
    )
    stopped = list(rows)
    notify_after_commit(db, wakeups, workers=stopped)
    await publishing.workers_changed(db, wakeups, stopped)
    return WorkersShutdownReply(workers=stopped)


async def shutdown_worker(
    db: AsyncSession,
    principal: Principal,
    worker_uuid: uuid.UUID,
    force: bool,
    wakeups: Wakeups | None = None,
) -> WorkerInfo:
    await shutdown_workers(db, principal, [worker_uuid], None, force, wakeups)
    worker = await find_worker(db, principal, worker_uuid, manage=False)
    await db.refresh(worker)
    return (await worker_infos(db, [worker]))[0]
