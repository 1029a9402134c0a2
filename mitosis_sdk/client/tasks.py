"""Tasks: submit, find, cancel, change, wait."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable

from mitosis_sdk.client.base import BaseClient
from mitosis_sdk.schemas import (
    ArraySubmit,
    ArraySubmitted,
    BatchReply,
    CancelReply,
    LabelsUpdate,
    TaskBatch,
    TaskCancel,
    TaskChange,
    TaskExplain,
    TaskFilter,
    TaskInfo,
    TaskPage,
    TaskQuery,
    TaskRerun,
    TaskSpec,
    TaskSubmitted,
)


class TasksAPI(BaseClient):
    async def submit_task(self, spec: TaskSpec) -> TaskSubmitted:
        """Submit one task (``write`` in its group); the reply has its UUID and number."""
        return await self.request("POST", "/api/tasks", body=spec, result=TaskSubmitted)

    async def submit_tasks(
        self, specs: list[TaskSpec], *, all_or_nothing: bool = False
    ) -> BatchReply:
        """Submit up to 10,000 specs; each is answered with its task or its error."""
        return await self.request(
            "POST",
            "/api/tasks/batch",
            body=TaskBatch(tasks=specs, all_or_nothing=all_or_nothing),
            result=BatchReply,
        )

    async def submit_array(self, spec: TaskSpec, array: str) -> ArraySubmitted:
        """One task per index of ``array`` (``0-99``, ``0-99:2``, ``1,5,7``, ``%N`` throttle);
        each sees ``MITO_ARRAY_INDEX``."""
        return await self.request(
            "POST",
            "/api/tasks/array",
            body=ArraySubmit(spec=spec, array=array),
            result=ArraySubmitted,
        )

    async def rerun_task(
        self, task: uuid.UUID | str, rerun: TaskRerun | None = None
    ) -> TaskSubmitted:
        """Submit a copy of a task's spec with the changes in ``rerun`` (``rerun_of`` links it)."""
        return await self.request(
            "POST", f"/api/tasks/{task}/rerun", body=rerun or TaskRerun(), result=TaskSubmitted
        )

    async def explain_task(self, task: uuid.UUID | str) -> TaskExplain:
        """Why a queued task is not running: per worker, the rule that blocks it."""
        return await self.request("GET", f"/api/tasks/{task}/explain", result=TaskExplain)

    async def get_task(self, task: uuid.UUID | str) -> TaskInfo:
        return await self.request("GET", f"/api/tasks/{task}", result=TaskInfo)

    async def query_tasks(self, query: TaskQuery | None = None) -> TaskPage:
        """One page; pass ``page.next_cursor`` as ``cursor`` for the next."""
        return await self.request(
            "POST", "/api/tasks/query", body=query or TaskQuery(), result=TaskPage
        )

    async def cancel_task(self, task: uuid.UUID | str) -> TaskInfo:
        return await self.request("POST", f"/api/tasks/{task}/cancel", result=TaskInfo)

    async def cancel_tasks(
        self,
        uuids: Iterable[uuid.UUID | str] = (),
        task_filter: TaskFilter | None = None,
    ) -> CancelReply:
        """Cancel by UUID list (all or nothing) or by filter."""
        body = TaskCancel(uuids=[uuid.UUID(str(u)) for u in uuids], filter=task_filter)
        return await self.request("POST", "/api/tasks/cancel", body=body, result=CancelReply)

    async def change_task(self, task: uuid.UUID | str, change: TaskChange) -> TaskInfo:
        """Change a queued task; unset fields of ``change`` stay as they are."""
        return await self.request("PATCH", f"/api/tasks/{task}", body=change, result=TaskInfo)

    async def update_task_labels(self, task: uuid.UUID | str, labels: list[str]) -> TaskInfo:
        """Replace the labels of any task (an empty list removes them)."""
        return await self.request(
            "PUT", f"/api/tasks/{task}/labels", body=LabelsUpdate(labels=labels), result=TaskInfo
        )

    async def wait_tasks(
        self,
        tasks: Iterable[uuid.UUID | str],
        *,
        poll: float = 1.0,
    ) -> list[TaskInfo]:
        """Poll until every task has ended (bound it with ``asyncio.timeout``)."""
        pending = [str(t) for t in tasks]
        done: dict[str, TaskInfo] = {}
        while True:
            for task in pending:
                if task not in done:
                    info = await self.get_task(task)
                    if info.state.terminal:
                        done[task] = info
            if len(done) == len(set(pending)):
                return [done[t] for t in pending]
            await asyncio.sleep(poll)
