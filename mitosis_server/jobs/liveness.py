"""The liveness monitor (FEATURES W2, T8): lost workers and overdue tasks go back to the queue.

Every ``liveness_interval`` one sweep, in one transaction:

* workers (online or draining) silent for ``heartbeat_timeout`` become ``lost``; the
  attempts they hold are released: requeued while attempts are left, else ``failed`` with
  reason ``worker_lost``;
* running attempts with no report for their timeout plus ``report_margin`` are released the
  same way (their worker heartbeats but has forgotten them).

Every change is a conditional UPDATE, so two coordinators sweeping at once release each
attempt once. What the sweep changed (workers lost, tasks requeued or failed, and the
dependents that settled because of it) is published after its commit, like a request's
changes (E1). A coordinator that has just started waits ``heartbeat_timeout`` before its
first sweep: while no coordinator was up, workers could not heartbeat, and they deserve the
time to come back before being declared lost (nothing in flight is lost by a restart).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mitosis_sdk.schemas import TaskReason, TaskState, WorkerState
from mitosis_sdk.waiting import wait_event
from mitosis_server.config import CoordinatorSettings
from mitosis_server.db.models import Task, TaskAttempt, Worker, utcnow
from mitosis_server.services import publishing
from mitosis_server.services.scheduling import (
    IS_RUNNING,
    LOST,
    release_attempts,
    requeued_groups,
)
from mitosis_server.services.wakeups import Wakeups

log = logging.getLogger(__name__)


@dataclass
class Sweep:
    lost_workers: list[str] = field(default_factory=list)
    requeued: int = 0
    failed: int = 0


class LivenessMonitor:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: CoordinatorSettings,
        wakeups: Wakeups,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.wakeups = wakeups

    async def sweep(self, now: datetime | None = None) -> Sweep:
        """One pass; ``now`` may be given (tests move time forward instead of sleeping)."""
        now = now or utcnow()
        result = Sweep()
        async with self.sessions() as db, db.begin():
            cutoff = now - timedelta(seconds=self.settings.heartbeat_timeout)
            lost = (
                await db.execute(
                    update(Worker)
                    .execution_options(synchronize_session=False)
                    .where(
                        Worker.state.in_([WorkerState.ONLINE.value, WorkerState.DRAINING.value]),
                        Worker.last_heartbeat < cutoff,
                    )
                    .values(state=WorkerState.LOST.value)
                    .returning(Worker.id, Worker.uuid)
                )
            ).all()
            released = []
            for worker_id, worker_uuid in lost:
                result.lost_workers.append(str(worker_uuid))
                held = await db.scalars(
                    select(TaskAttempt.id).where(
                        TaskAttempt.worker_id == worker_id, TaskAttempt.ended_at.is_(None)
                    )
                )
                released += await release_attempts(
                    db,
                    list(held),
                    now,
                    LOST,
                    TaskReason.WORKER_LOST,
                    f"worker {worker_uuid} stopped heartbeating",
                )
            overdue = await db.scalars(
                select(TaskAttempt.id)
                .join(
                    Task,
                    and_(Task.id == TaskAttempt.task_id, Task.attempt == TaskAttempt.attempt),
                )
                .where(IS_RUNNING, Task.deadline_at < now, TaskAttempt.ended_at.is_(None))
            )
            released += await release_attempts(
                db,
                list(overdue),
                now,
                LOST,
                TaskReason.REPORT_OVERDUE,
                "no report from its worker within the task's timeout plus the report margin",
            )
            groups = await requeued_groups(db, released)
            await publishing.workers_changed(db, self.wakeups, [u for _, u in lost])
            await publishing.tasks_changed(db, self.wakeups, [])
        await publishing.run_after_commit(db)
        result.requeued = sum(state == TaskState.READY for state, _ in released)
        result.failed = len(released) - result.requeued
        self.wakeups.notify(groups=groups)
        if lost or released:
            log.warning(
                "liveness.swept lost_workers=%d requeued=%d failed=%d",
                len(lost),
                result.requeued,
                result.failed,
            )
        return result

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until ``stop`` is set, after the start-up grace period."""
        if await wait_event(stop, self.settings.heartbeat_timeout):
            return
        while True:
            try:
                await self.sweep()
            except Exception:  # a database hiccup must not end the monitor
                log.exception("liveness.sweep_failed")
            if await wait_event(stop, self.settings.liveness_interval):
                return
