"""A worker daemon in miniature for the dispatch tests: an SDK client holding a worker token
that claims and reports through the real API but runs no processes (issue 3, item 6)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy import update

from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import Assignment, AttemptRef, Grant, Role, TaskSpec, WorkerCommands
from mitosis_server.db.models import Worker, utcnow


@dataclass
class TestWorker:
    __test__ = False  # not a pytest test class

    uuid: str
    client: AsyncClient
    held: dict[str, Assignment] = field(default_factory=dict)

    async def fetch(
        self, wait: float = 0.0, max_tasks: int = 1, ahead: int = 0
    ) -> list[Assignment]:
        reply = await self.client.fetch_tasks(
            self.uuid, wait=wait, max_tasks=max_tasks, ahead=ahead
        )
        for task in reply.tasks:
            self.held[str(task.task)] = task
        return reply.tasks

    async def fetch_one(self, wait: float = 0.0) -> Assignment | None:
        tasks = await self.fetch(wait=wait)
        return tasks[0] if tasks else None

    async def heartbeat(self) -> WorkerCommands:
        running = [AttemptRef(task=a.task, attempt=a.attempt) for a in self.held.values()]
        return await self.client.heartbeat(self.uuid, running)

    async def finish(self, task: Assignment, exit_code: int = 0, **result):
        ack = await self.client.report_result(
            self.uuid, task.task, task.attempt, exit_code=exit_code, **result
        )
        self.held.pop(str(task.task), None)
        return ack


async def start_worker(
    owner: AsyncClient,
    transport: httpx.AsyncBaseTransport,
    *,
    groups: dict[str, Role] | None = None,
    tags: list[str] = (),
    labels: list[str] = (),
    slots: int = 1,
) -> TestWorker:
    """Register a worker as ``owner`` and return it logged in with its own token."""
    grants = [Grant(group=g, role=r) for g, r in (groups or {}).items()]
    registered = await owner.register_worker(
        tags=list(tags), labels=list(labels), grants=grants, slots=slots, version="test"
    )
    client = AsyncClient("http://mitosis.test", registered.token, transport=transport)
    return TestWorker(str(registered.worker.uuid), client)


def spec(*command: str, **fields) -> TaskSpec:
    return TaskSpec(command=list(command or ("true",)), **fields)


async def heartbeat_at(app, worker: TestWorker, moment: datetime) -> None:
    """Set when the worker last gave a sign of life, as if it had heartbeated then."""
    async with app.state.coordinator.sessions.begin() as db:
        await db.execute(
            update(Worker)
            .where(Worker.uuid == uuid.UUID(worker.uuid))
            .values(last_heartbeat=moment)
        )


async def silence(app, worker: TestWorker, seconds: float) -> None:
    """Make a worker look silent for ``seconds`` (as if its heartbeats had stopped then)."""
    await heartbeat_at(app, worker, utcnow() - timedelta(seconds=seconds))
