"""Task artifacts for users: list, download links, uploads, deletes; single or by selection;
and a group's artifact retention (FEATURES F5).

Artifact types are path segments (``result``, ``exec-log``, ``std-log``); anything else is a
400. The worker's own artifact uploads are in :mod:`mitosis_server.api.worker_files`.
"""

from __future__ import annotations

from litestar import Controller, delete, get, post, put
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from mitosis_sdk.schemas import ArtifactType, Name
from mitosis_sdk.schemas.files import (
    ArtifactInfo,
    ArtifactLink,
    ArtifactLinks,
    ArtifactSelection,
    ArtifactUploadBegin,
    DeleteReply,
    RetentionInfo,
    RetentionUpdate,
    UploadComplete,
    UploadTicket,
)
from mitosis_server.api.guards import DB, Caller, Files, PathUUID, users_only
from mitosis_server.services import artifacts, retention

Kind = FromPath[ArtifactType]


class TaskArtifactController(Controller):
    path = "/api/tasks/{task_id:uuid}/artifacts"
    tags = ["artifacts"]
    guards = [users_only]

    @get("/", summary="A task's artifacts with size and time (needs read)")
    async def list_artifacts(
        self, db: DB, principal: Caller, task_id: PathUUID
    ) -> list[ArtifactInfo]:
        return await artifacts.list_artifacts(db, principal, task_id)

    @get("/{kind:str}/download", summary="A download URL for one artifact")
    async def download(
        self, db: DB, principal: Caller, objects: Files, task_id: PathUUID, kind: Kind
    ) -> ArtifactLink:
        return await artifacts.download_link(db, objects, principal, task_id, kind)

    @delete("/{kind:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete one artifact")
    async def delete_artifact(
        self, db: DB, principal: Caller, objects: Files, task_id: PathUUID, kind: Kind
    ) -> None:
        await artifacts.delete_artifact(db, objects, principal, task_id, kind)

    @post(
        "/{kind:str}/uploads",
        status_code=HTTP_201_CREATED,
        summary="Begin a user's upload of an artifact (needs write; checks the quota)",
    )
    async def begin_upload(
        self,
        db: DB,
        principal: Caller,
        objects: Files,
        task_id: PathUUID,
        kind: Kind,
        data: JSONBody[ArtifactUploadBegin],
    ) -> UploadTicket:
        return await artifacts.begin_upload(db, objects, principal, task_id, kind, data)

    @post("/uploads/{upload_id:uuid}/complete", status_code=HTTP_200_OK, summary="Complete it")
    async def complete_upload(
        self,
        db: DB,
        principal: Caller,
        objects: Files,
        task_id: PathUUID,
        upload_id: PathUUID,
        data: JSONBody[UploadComplete],
    ) -> ArtifactInfo:
        return await artifacts.complete_upload(
            db, objects, principal, task_id, upload_id, data.parts
        )

    @delete("/uploads/{upload_id:uuid}", status_code=HTTP_204_NO_CONTENT, summary="Abort it")
    async def abort_upload(
        self, db: DB, principal: Caller, objects: Files, task_id: PathUUID, upload_id: PathUUID
    ) -> None:
        await artifacts.abort_upload(db, objects, principal, task_id, upload_id)


class ArtifactController(Controller):
    """Artifacts of many tasks at once: by UUID list (``filter.uuids``) or any task filter."""

    path = "/api/artifacts"
    tags = ["artifacts"]
    guards = [users_only]

    @post("/links", status_code=HTTP_200_OK, summary="Download URLs for the selected artifacts")
    async def links(
        self, db: DB, principal: Caller, objects: Files, data: JSONBody[ArtifactSelection]
    ) -> ArtifactLinks:
        return await artifacts.download_links(db, objects, principal, data)

    @post("/delete", status_code=HTTP_200_OK, summary="Delete the selected artifacts")
    async def delete_many(
        self, db: DB, principal: Caller, objects: Files, data: JSONBody[ArtifactSelection]
    ) -> DeleteReply:
        return await artifacts.delete_artifacts(db, objects, principal, data)


class RetentionController(Controller):
    path = "/api/groups/{group:str}/retention"
    tags = ["artifacts"]
    guards = [users_only]

    @get("/", summary="A group's artifact retention (needs read)")
    async def get_retention(self, db: DB, principal: Caller, group: Name) -> RetentionInfo:
        return await retention.get_retention(db, principal, group)

    @put("/", summary="Delete artifacts older than N days, or keep them (group admins)")
    async def set_retention(
        self, db: DB, principal: Caller, group: Name, data: JSONBody[RetentionUpdate]
    ) -> RetentionInfo:
        return await retention.set_retention(db, principal, group, data.artifact_days)


ROUTES = [TaskArtifactController, ArtifactController, RetentionController]
