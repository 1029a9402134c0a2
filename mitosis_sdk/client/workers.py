"""Workers: registration and management, and the calls a worker daemon makes.

A worker daemon registers with its user's token, then uses the worker token it got back
(``worker_client``); :meth:`WorkersAPI.heartbeat` installs renewed tokens by itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from mitosis_sdk.client.base import BaseClient
from mitosis_sdk.schemas import (
    AttemptRef,
    DownstreamReply,
    DownstreamSubmit,
    FetchReply,
    FetchRequest,
    Grant,
    GrantsRemove,
    GrantsUpdate,
    Heartbeat,
    HostFacts,
    LabelsUpdate,
    PhaseEntry,
    PhaseReport,
    ReportAck,
    ResultEntry,
    ResultReport,
    TagsUpdate,
    TaskPhase,
    TaskReason,
    WorkerCommands,
    WorkerFilter,
    WorkerInfo,
    WorkerPage,
    WorkerQuery,
    WorkerRegister,
    WorkerRegistered,
    WorkerShutdown,
    WorkersShutdown,
    WorkersShutdownReply,
)


class WorkersAPI(BaseClient):
    # --- users ---

    async def register_worker(
        self,
        *,
        tags: Iterable[str] = (),
        labels: Iterable[str] = (),
        grants: Iterable[Grant] = (),
        slots: int = 1,
        facts: HostFacts | None = None,
        version: str = "",
    ) -> WorkerRegistered:
        """Register a worker; the reply carries the worker's own token."""
        body = WorkerRegister(
            tags=list(tags),
            labels=list(labels),
            grants=list(grants),
            slots=slots,
            facts=facts or HostFacts(),
            version=version,
        )
        return await self.request("POST", "/api/workers", body=body, result=WorkerRegistered)

    async def query_workers(self, query: WorkerQuery | None = None) -> WorkerPage:
        return await self.request(
            "POST", "/api/workers/query", body=query or WorkerQuery(), result=WorkerPage
        )

    async def get_worker(self, worker: uuid.UUID | str) -> WorkerInfo:
        return await self.request("GET", f"/api/workers/{worker}", result=WorkerInfo)

    async def update_worker_tags(self, worker: uuid.UUID | str, tags: list[str]) -> WorkerInfo:
        return await self.request(
            "PUT", f"/api/workers/{worker}/tags", body=TagsUpdate(tags=tags), result=WorkerInfo
        )

    async def update_worker_labels(self, worker: uuid.UUID | str, labels: list[str]) -> WorkerInfo:
        return await self.request(
            "PUT",
            f"/api/workers/{worker}/labels",
            body=LabelsUpdate(labels=labels),
            result=WorkerInfo,
        )

    async def update_worker_grants(
        self, worker: uuid.UUID | str, grants: list[Grant]
    ) -> WorkerInfo:
        return await self.request(
            "POST",
            f"/api/workers/{worker}/grants",
            body=GrantsUpdate(grants=grants),
            result=WorkerInfo,
        )

    async def remove_worker_grants(self, worker: uuid.UUID | str, groups: list[str]) -> WorkerInfo:
        return await self.request(
            "POST",
            f"/api/workers/{worker}/grants/remove",
            body=GrantsRemove(groups=groups),
            result=WorkerInfo,
        )

    async def drain_worker(self, worker: uuid.UUID | str) -> WorkerInfo:
        return await self.request("POST", f"/api/workers/{worker}/drain", result=WorkerInfo)

    async def resume_worker(self, worker: uuid.UUID | str) -> WorkerInfo:
        return await self.request("POST", f"/api/workers/{worker}/resume", result=WorkerInfo)

    async def shutdown_worker(self, worker: uuid.UUID | str, force: bool = False) -> WorkerInfo:
        return await self.request(
            "POST",
            f"/api/workers/{worker}/shutdown",
            body=WorkerShutdown(force=force),
            result=WorkerInfo,
        )

    async def shutdown_workers(
        self,
        uuids: Iterable[uuid.UUID | str] = (),
        worker_filter: WorkerFilter | None = None,
        force: bool = False,
    ) -> WorkersShutdownReply:
        body = WorkersShutdown(
            uuids=[uuid.UUID(str(u)) for u in uuids], filter=worker_filter, force=force
        )
        return await self.request(
            "POST", "/api/workers/shutdown", body=body, result=WorkersShutdownReply
        )

    # --- the worker daemon, with its own token ---

    async def heartbeat(
        self, worker: uuid.UUID | str, running: Iterable[AttemptRef] = ()
    ) -> WorkerCommands:
        """Report life and running attempts; returns orders (and installs a renewed token)."""
        commands = await self.request(
            "POST",
            f"/api/workers/{worker}/heartbeat",
            body=Heartbeat(running=list(running)),
            result=WorkerCommands,
        )
        if commands.token:
            self.token = commands.token
        return commands

    async def fetch_tasks(
        self,
        worker: uuid.UUID | str,
        *,
        wait: float = 0.0,
        max_tasks: int = 1,
        ahead: int = 0,
        results: Iterable[ResultEntry] = (),
        phases: Iterable[PhaseEntry] = (),
        known: Iterable[AttemptRef] | None = None,
    ) -> FetchReply:
        """Report ``results`` and ``phases`` (each gets an outcome in ``reply.reports``),
        then claim up to ``max_tasks``; with ``wait`` (≤ 30 s) and nothing reported, park
        until a task arrives. ``ahead``: tasks the worker may hold beyond its slots, queued
        until one frees. ``known`` lists every attempt the worker holds as far as it knows,
        so tasks claimed by a fetch whose reply was lost are delivered again."""
        body = FetchRequest(
            wait=wait,
            max_tasks=max_tasks,
            ahead=ahead,
            results=list(results),
            phases=list(phases),
            known=None if known is None else list(known),
        )
        return await self.request(
            "POST",
            f"/api/workers/{worker}/fetch",
            body=body,
            result=FetchReply,
            http_timeout=wait + 30.0,
        )

    async def report_phase(
        self,
        worker: uuid.UUID | str,
        task: uuid.UUID | str,
        attempt: int,
        phase: TaskPhase,
        message: str | None = None,
    ) -> ReportAck:
        return await self.request(
            "POST",
            f"/api/workers/{worker}/tasks/{task}/phase",
            body=PhaseReport(attempt=attempt, phase=phase, message=message),
            result=ReportAck,
        )

    async def report_result(
        self,
        worker: uuid.UUID | str,
        task: uuid.UUID | str,
        attempt: int,
        *,
        exit_code: int | None = None,
        signal: int | None = None,
        reason: TaskReason | None = None,
        message: str | None = None,
        phase: TaskPhase | None = None,
    ) -> ReportAck:
        """How an attempt ended (``phase``: the last it reached); 409 (Conflict) when the
        attempt was superseded."""
        body = ResultReport(
            attempt=attempt,
            exit_code=exit_code,
            signal=signal,
            reason=reason,
            message=message,
            phase=phase,
        )
        return await self.request(
            "POST", f"/api/workers/{worker}/tasks/{task}/result", body=body, result=ReportAck
        )

    async def submit_downstream(
        self,
        worker: uuid.UUID | str,
        task: uuid.UUID | str,
        attempt: int,
        content: str | bytes,
    ) -> DownstreamReply:
        """Submit what the task wrote to ``MITO_NEW_TASK`` (send the file verbatim, before
        reporting the result): the coordinator parses it, submits the specs as dependents
        of the task, or records ``downstream_submit_failed`` on it and says so in ``error``."""
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        return await self.request(
            "POST",
            f"/api/workers/{worker}/tasks/{task}/downstream",
            body=DownstreamSubmit(attempt=attempt, content=content),
            result=DownstreamReply,
        )

    async def unregister_worker(self, worker: uuid.UUID | str) -> None:
        """Leave: tasks still held are requeued, the worker token stops working."""
        await self.request("POST", f"/api/workers/{worker}/unregister")
