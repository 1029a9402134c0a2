"""Tasks: submit, read, cancel and change (users' tokens only)."""

from __future__ import annotations

from litestar import Controller, Request, get, patch, post, put
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from mitosis_sdk.errors import ErrorBody
from mitosis_sdk.schemas import (
    ArraySubmit,
    ArraySubmitted,
    BatchItem,
    BatchReply,
    CancelReply,
    LabelsUpdate,
    TaskBatch,
    TaskCancel,
    TaskChange,
    TaskExplain,
    TaskInfo,
    TaskPage,
    TaskQuery,
    TaskRerun,
    TaskSpec,
    TaskSubmitted,
)
from mitosis_server.api.guards import DB, Caller, PathUUID, users_only
from mitosis_server.errors import DomainError
from mitosis_server.services import (
    explain,
    single_submit,
    submissions,
    task_queries,
    tasks,
    workflow_submit,
)
from mitosis_server.state import Coordinator


def _coordinator(request: Request) -> Coordinator:
    return request.app.state.coordinator


def _item(result: TaskSubmitted | DomainError) -> BatchItem:
    if isinstance(result, DomainError):
        return BatchItem(error=ErrorBody(error=result.code, message=result.message))
    return BatchItem(task=result)


class TaskController(Controller):
    path = "/api/tasks"
    tags = ["tasks"]
    guards = [users_only]

    @post("/", status_code=HTTP_201_CREATED, summary="Submit a task (needs write in its group)")
    async def submit(
        self, request: Request, principal: Caller, data: JSONBody[TaskSpec]
    ) -> TaskSubmitted:
        coordinator = _coordinator(request)
        return await single_submit.submit_one(
            coordinator.sessions,
            principal,
            data,
            max_attempts=coordinator.settings.max_attempts,
            wakeups=coordinator.wakeups,
            runnable=coordinator.runnable,
        )

    @post("/batch", status_code=HTTP_200_OK, summary="Submit up to 10,000 tasks at once")
    async def submit_many(
        self, request: Request, db: DB, principal: Caller, data: JSONBody[TaskBatch]
    ) -> BatchReply:
        """Each spec is answered with its task or its error; with ``all_or_nothing`` the
        first error fails the request and nothing is submitted."""
        coordinator = _coordinator(request)
        results = await submissions.submit_tasks(
            db,
            principal,
            data.tasks,
            all_or_nothing=data.all_or_nothing,
            max_attempts=coordinator.settings.max_attempts,
            wakeups=coordinator.wakeups,
        )
        items = [_item(r) for r in results]
        failed = sum(item.error is not None for item in items)
        return BatchReply(submitted=len(items) - failed, failed=failed, results=items)

    @post("/array", status_code=HTTP_201_CREATED, summary="Submit one spec per array index")
    async def submit_array(
        self, request: Request, db: DB, principal: Caller, data: JSONBody[ArraySubmit]
    ) -> ArraySubmitted:
        """``0-99``, ``0-99:2``, ``1,5,7``, optionally ``%N`` (at most N running at once)."""
        coordinator = _coordinator(request)
        return await workflow_submit.submit_array(
            db,
            principal,
            data,
            max_attempts=coordinator.settings.max_attempts,
            wakeups=coordinator.wakeups,
        )

    @post("/{task_id:uuid}/rerun", status_code=HTTP_201_CREATED, summary="Submit a copy")
    async def rerun(
        self,
        request: Request,
        db: DB,
        principal: Caller,
        task_id: PathUUID,
        data: JSONBody[TaskRerun],
    ) -> TaskSubmitted:
        """A copy of the task's spec with the given changes, linked by ``rerun_of``."""
        coordinator = _coordinator(request)
        return await workflow_submit.rerun_task(
            db,
            principal,
            task_id,
            data,
            max_attempts=coordinator.settings.max_attempts,
            wakeups=coordinator.wakeups,
        )

    @get("/{task_id:uuid}/explain", summary="Why a queued task is not running (per worker)")
    async def explain(self, db: DB, principal: Caller, task_id: PathUUID) -> TaskExplain:
        return await explain.explain_task(db, principal, task_id)

    @post("/query", status_code=HTTP_200_OK, summary="Find tasks: filters, order, pages")
    async def query(self, db: DB, principal: Caller, data: JSONBody[TaskQuery]) -> TaskPage:
        return await task_queries.query_tasks(db, principal, data)

    @get("/{task_id:uuid}", summary="A task with its environment and attempts")
    async def get_task(self, db: DB, principal: Caller, task_id: PathUUID) -> TaskInfo:
        return await task_queries.get_task(db, principal, task_id)

    @post("/{task_id:uuid}/cancel", status_code=HTTP_200_OK, summary="Cancel a task")
    async def cancel(
        self, request: Request, db: DB, principal: Caller, task_id: PathUUID
    ) -> TaskInfo:
        """Pending, ready or running; a running task's worker kills it."""
        return await tasks.cancel_task(db, principal, task_id, _coordinator(request).wakeups)

    @post("/cancel", status_code=HTTP_200_OK, summary="Cancel tasks by UUID list or filter")
    async def cancel_many(
        self, request: Request, db: DB, principal: Caller, data: JSONBody[TaskCancel]
    ) -> CancelReply:
        return await tasks.cancel_tasks(
            db, principal, data.uuids, data.filter, _coordinator(request).wakeups
        )

    @patch("/{task_id:uuid}", summary="Change a queued task")
    async def change(
        self,
        request: Request,
        db: DB,
        principal: Caller,
        task_id: PathUUID,
        data: JSONBody[TaskChange],
    ) -> TaskInfo:
        return await tasks.change_task(db, principal, task_id, data, _coordinator(request).wakeups)

    @put("/{task_id:uuid}/labels", summary="Replace a task's labels (any state)")
    async def labels(
        self, db: DB, principal: Caller, task_id: PathUUID, data: JSONBody[LabelsUpdate]
    ) -> TaskInfo:
        return await tasks.replace_labels(db, principal, task_id, data.labels)


ROUTES = [TaskController]
