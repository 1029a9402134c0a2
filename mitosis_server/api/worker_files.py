"""What a worker daemon asks about files, with its own token: the download URLs of a task's
resources, and uploads of its artifacts. Every call names the attempt the worker holds; a
superseded or ended attempt gets 409 and changes nothing (FEATURES T8)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from mitosis_sdk.schemas import ArtifactType
from mitosis_sdk.schemas.files import (
    ArtifactInfo,
    ArtifactUploadBegin,
    ResourceLink,
    UploadComplete,
    UploadTicket,
)
from mitosis_server.api.guards import DB, Caller, Files, PathUUID, own_worker_only
from mitosis_server.services import artifacts, resources


class WorkerFilesController(Controller):
    path = "/api/workers/{worker_id:uuid}/tasks/{task_id:uuid}"
    tags = ["worker daemon"]
    guards = [own_worker_only]

    @get("/resources", summary="Download URLs of a task's resources, checked for its creator")
    async def resources(
        self,
        db: DB,
        objects: Files,
        worker_id: PathUUID,
        task_id: PathUUID,
        attempt: Annotated[int, QueryParameter(ge=1)],
    ) -> list[ResourceLink]:
        """404 when a resource does not exist, 403 when the task's creator may not read it;
        the message names the resource (the worker fails the task with ``resource_error``)."""
        return await resources.resolve_resources(db, objects, worker_id, task_id, attempt)

    @post(
        "/artifacts/{kind:str}/uploads",
        status_code=HTTP_201_CREATED,
        summary="Begin uploading an artifact of the attempt the worker holds",
    )
    async def begin_upload(
        self,
        db: DB,
        principal: Caller,
        objects: Files,
        worker_id: PathUUID,
        task_id: PathUUID,
        kind: FromPath[ArtifactType],
        data: JSONBody[ArtifactUploadBegin],
    ) -> UploadTicket:
        return await artifacts.begin_worker_upload(
            db, objects, principal, worker_id, task_id, kind, data
        )

    @post(
        "/artifacts/uploads/{upload_id:uuid}/complete",
        status_code=HTTP_200_OK,
        summary="Complete it (409 when the attempt was superseded meanwhile)",
    )
    async def complete_upload(
        self,
        db: DB,
        principal: Caller,
        objects: Files,
        worker_id: PathUUID,
        task_id: PathUUID,
        upload_id: PathUUID,
        data: JSONBody[UploadComplete],
    ) -> ArtifactInfo:
        return await artifacts.complete_worker_upload(
            db, objects, principal, worker_id, task_id, upload_id, data.parts
        )

    @delete(
        "/artifacts/uploads/{upload_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Abort it",
    )
    async def abort_upload(
        self,
        db: DB,
        objects: Files,
        worker_id: PathUUID,
        task_id: PathUUID,
        upload_id: PathUUID,
    ) -> None:
        await artifacts.abort_worker_upload(db, objects, worker_id, task_id, upload_id)


ROUTES = [WorkerFilesController]
