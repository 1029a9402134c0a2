"""Workers: registration and management by users, and the worker's own calls.

The worker's own calls (heartbeat, fetch, reports, unregister) accept only the token its
registration returned, bound to the worker in the path; everything else needs a user token.
"""

from __future__ import annotations

from litestar import Controller, Request, get, post, put
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from mitosis_sdk.schemas import (
    DownstreamReply,
    DownstreamSubmit,
    FetchReply,
    FetchRequest,
    GrantsRemove,
    GrantsUpdate,
    Heartbeat,
    LabelsUpdate,
    PhaseReport,
    ReportAck,
    ResultReport,
    TagsUpdate,
    WorkerCommands,
    WorkerInfo,
    WorkerPage,
    WorkerQuery,
    WorkerRegister,
    WorkerRegistered,
    WorkerShutdown,
    WorkersShutdown,
    WorkersShutdownReply,
)
from mitosis_server.api.guards import (
    DB,
    Caller,
    PathUUID,
    client_address,
    own_worker_only,
    users_only,
)
from mitosis_server.services import (
    dispatch,
    publishing,
    reports,
    worker_admin,
    workers,
    workflow_submit,
)
from mitosis_server.state import Coordinator


def _coordinator(request: Request) -> Coordinator:
    return request.app.state.coordinator


class WorkerController(Controller):
    path = "/api/workers"
    tags = ["workers"]
    guards = [users_only]

    @post("/", status_code=HTTP_201_CREATED, summary="Register a worker; returns its own token")
    async def register(
        self, request: Request, db: DB, principal: Caller, data: JSONBody[WorkerRegister]
    ) -> WorkerRegistered:
        """Granting a group needs ``write`` in it; the caller's personal group gets admin."""
        coordinator = _coordinator(request)
        registered = await workers.register_worker(
            db, coordinator.authenticator, principal, data, client_address(request)
        )
        await publishing.workers_changed(db, coordinator.wakeups, [registered.worker.uuid])
        registered.log_redis = coordinator.log_shipping  # Redis for live logs (X5), or None
        return registered

    @post("/query", status_code=HTTP_200_OK, summary="Find workers the caller can see")
    async def query(
        self, request: Request, db: DB, principal: Caller, data: JSONBody[WorkerQuery]
    ) -> WorkerPage:
        timeout = _coordinator(request).settings.heartbeat_timeout
        return await workers.query_workers(db, principal, data, timeout)

    @get("/{worker_id:uuid}", summary="A worker: tags, grants, state, running tasks")
    async def get_worker(self, db: DB, principal: Caller, worker_id: PathUUID) -> WorkerInfo:
        return await workers.get_worker(db, principal, worker_id)

    @put("/{worker_id:uuid}/tags", summary="Replace a worker's tags (empty allowed)")
    async def tags_(
        self,
        request: Request,
        db: DB,
        principal: Caller,
        worker_id: PathUUID,
        data: JSONBody[TagsUpdate],
    ) -> WorkerInfo:
        return await worker_admin.replace_tags(
            db, principal, worker_id, data.tags, _coordinator(request).wakeups
        )

    @put("/{worker_id:uuid}/labels", summary="Replace a worker's labels (empty allowed)")
    async def labels(
        self, db: DB, principal: Caller, worker_id: PathUUID, data: JSONBody[LabelsUpdate]
    ) -> WorkerInfo:
        return await worker_admin.replace_labels(db, principal, worker_id, data.labels)

    @post("/{worker_id:uuid}/grants", status_code=HTTP_200_OK, summary="Add or change grants")
    async def update_grants(
        self,
        request: Request,
        db: DB,
        principal: Caller,
        worker_id: PathUUID,
        data: JSONBody[GrantsUpdate],
    ) -> WorkerInfo:
        return await worker_admin.update_grants(
            db, principal, worker_id, data.grants, _coordinator(request).wakeups
        )

    @post("/{worker_id:uuid}/grants/remove", status_code=HTTP_200_OK, summary="Remove grants")
    async def remove_grants(
        self,
        request: Request,
        db: DB,
        principal: Caller,
        worker_id: PathUUID,
        data: JSONBody[GrantsRemove],
    ) -> WorkerInfo:
        return await worker_admin.remove_grants(
            db, principal, worker_id, data.groups, _coordinator(request).wakeups
        )

    @post("/{worker_id:uuid}/drain", status_code=HTTP_200_OK, summary="Take no new tasks")
    async def drain(
        self, request: Request, db: DB, principal: Caller, worker_id: PathUUID
    ) -> WorkerInfo:
        return await worker_admin.drain(db, principal, worker_id, _coordinator(request).wakeups)

    @post("/{worker_id:uuid}/resume", status_code=HTTP_200_OK, summary="Take tasks again")
    async def resume(
        self, request: Request, db: DB, principal: Caller, worker_id: PathUUID
    ) -> WorkerInfo:
        return await worker_admin.resume(db, principal, worker_id, _coordinator(request).wakeups)

    @post("/{worker_id:uuid}/shutdown", status_code=HTTP_200_OK, summary="Stop a worker")
    async def shutdown(
        self,
        request: Request,
        db: DB,
        principal: Caller,
        worker_id: PathUUID,
        data: JSONBody[WorkerShutdown],
    ) -> WorkerInfo:
        """Graceful: finish running tasks, then exit; ``force``: kill them (requeued)."""
        return await worker_admin.shutdown_worker(
            db, principal, worker_id, data.force, _coordinator(request).wakeups
        )

    @post("/shutdown", status_code=HTTP_200_OK, summary="Stop workers by UUID list or filter")
    async def shutdown_many(
        self, request: Request, db: DB, principal: Caller, data: JSONBody[WorkersShutdown]
    ) -> WorkersShutdownReply:
        return await worker_admin.shutdown_workers(
            db, principal, data.uuids, data.filter, data.force, _coordinator(request).wakeups
        )


class WorkerSelfController(Controller):
    """Calls a worker daemon makes about itself, with its own token."""

    path = "/api/workers/{worker_id:uuid}"
    tags = ["worker daemon"]
    guards = [own_worker_only]

    @post("/heartbeat", status_code=HTTP_200_OK, summary="Sign of life; returns orders")
    async def heartbeat(
        self,
        request: Request,
        db: DB,
        principal: Caller,
        worker_id: PathUUID,
        data: JSONBody[Heartbeat],
    ) -> WorkerCommands:
        """Lists what the worker runs; the reply says what to kill, whether to drain or stop,
        and carries a renewed token when the current one is past half its life."""
        return await workers.heartbeat(
            db,
            _coordinator(request).authenticator,
            principal,
            worker_id,
            data.running,
            client_address(request),
            _coordinator(request).wakeups,
        )

    @post(
        "/fetch",
        status_code=HTTP_200_OK,
        summary="Report results and phases, claim tasks, long-polling up to 30 s",
    )
    async def fetch(
        self, request: Request, worker_id: PathUUID, data: JSONBody[FetchRequest]
    ) -> FetchReply:
        coordinator = _coordinator(request)
        reply = await dispatch.fetch_tasks(
            coordinator.sessions,
            coordinator.wakeups,
            worker_id,
            data,
            coordinator.settings.report_margin,
        )
        await publishing.publish_claimed(coordinator.events, worker_id, reply.tasks)
        return reply

    @post("/tasks/{task_id:uuid}/phase", status_code=HTTP_200_OK, summary="Report a phase")
    async def phase(
        self,
        request: Request,
        db: DB,
        worker_id: PathUUID,
        task_id: PathUUID,
        data: JSONBody[PhaseReport],
    ) -> ReportAck:
        coordinator = _coordinator(request)
        margin = coordinator.settings.report_margin
        return await reports.report_phase(db, worker_id, task_id, data, margin, coordinator.wakeups)

    @post("/tasks/{task_id:uuid}/result", status_code=HTTP_200_OK, summary="Report a result")
    async def result(
        self,
        request: Request,
        db: DB,
        worker_id: PathUUID,
        task_id: PathUUID,
        data: JSONBody[ResultReport],
    ) -> ReportAck:
        """Exit code, signal, reason; a superseded attempt gets 409 and changes nothing."""
        return await reports.report_result(
            db, worker_id, task_id, data, _coordinator(request).wakeups
        )

    @post(
        "/tasks/{task_id:uuid}/downstream",
        status_code=HTTP_200_OK,
        summary="Submit what the task wrote to MITO_NEW_TASK",
    )
    async def downstream(
        self,
        request: Request,
        db: DB,
        worker_id: PathUUID,
        task_id: PathUUID,
        data: JSONBody[DownstreamSubmit],
    ) -> DownstreamReply:
        """On the task's behalf, as dependents of it; a malformed file is recorded on the
        task (``downstream_error``) and answered in ``error``, creating nothing."""
        coordinator = _coordinator(request)
        return await workflow_submit.submit_downstream(
            db,
            worker_id,
            task_id,
            data,
            max_attempts=coordinator.settings.max_attempts,
            wakeups=coordinator.wakeups,
        )

    @post("/unregister", status_code=HTTP_204_NO_CONTENT, summary="Leave; held tasks requeue")
    async def unregister(
        self, request: Request, db: DB, principal: Caller, worker_id: PathUUID
    ) -> None:
        await workers.unregister(db, principal, worker_id, _coordinator(request).wakeups)
        _coordinator(request).authenticator.forget(principal.session_id)


ROUTES = [WorkerController, WorkerSelfController]
