"""Group attachments: two-phase uploads, metadata, download links, queries, deletes.

Keys travel in bodies or as the ``key`` query parameter, never in the path: a router folds
``//`` and ``.`` segments in paths, and a key must reach the rules exactly as it was sent.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from mitosis_sdk.schemas import Name
from mitosis_sdk.schemas.files import (
    AttachmentInfo,
    AttachmentLink,
    AttachmentLinks,
    AttachmentPage,
    AttachmentSelection,
    AttachmentUploadBegin,
    DeleteReply,
    FolderPage,
    UploadComplete,
    UploadTicket,
    folder_prefix,
)
from mitosis_sdk.schemas.limits import MAX_PAGE
from mitosis_server.api.guards import DB, Caller, Files, PathUUID, users_only
from mitosis_server.errors import invalid
from mitosis_server.services import attachments

Key = Annotated[str, QueryParameter(name="key", max_length=4096, description="the attachment key")]
Text = Annotated[str | None, QueryParameter(max_length=4096)]


class AttachmentController(Controller):
    path = "/api/groups/{group:str}/attachments"
    tags = ["attachments"]
    guards = [users_only]

    @post("/uploads", status_code=HTTP_201_CREATED, summary="Begin an upload (needs write)")
    async def begin_upload(
        self,
        db: DB,
        principal: Caller,
        objects: Files,
        group: Name,
        data: JSONBody[AttachmentUploadBegin],
    ) -> UploadTicket:
        """Checks role, key and quota, reserves ``size`` and answers with the upload URLs;
        a quota short by even one byte is a 422 before any byte moves."""
        return await attachments.begin_upload(db, objects, principal, group, data)

    @post(
        "/uploads/{upload_id:uuid}/complete",
        status_code=HTTP_200_OK,
        summary="Complete an upload: the stored size is checked, the file recorded",
    )
    async def complete_upload(
        self,
        db: DB,
        principal: Caller,
        objects: Files,
        group: Name,
        upload_id: PathUUID,
        data: JSONBody[UploadComplete],
    ) -> AttachmentInfo:
        return await attachments.complete_upload(
            db, objects, principal, group, upload_id, data.parts
        )

    @delete(
        "/uploads/{upload_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Abort an upload and give its reservation back",
    )
    async def abort_upload(
        self, db: DB, principal: Caller, objects: Files, group: Name, upload_id: PathUUID
    ) -> None:
        await attachments.abort_upload(db, objects, principal, group, upload_id)

    @get("/", summary="Query a group's attachments (key order, paginated, with a total)")
    async def query(
        self,
        db: DB,
        principal: Caller,
        group: Name,
        prefix: Text = None,
        contains: Text = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, QueryParameter(ge=0)] = 0,
    ) -> AttachmentPage:
        return await attachments.query_attachments(
            db, principal, group, prefix=prefix, contains=contains, limit=limit, offset=offset
        )

    @get("/folder", summary="One folder's entries: sub-folders first, then files")
    async def folder(
        self,
        db: DB,
        principal: Caller,
        group: Name,
        prefix: Text = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, QueryParameter(ge=0)] = 0,
    ) -> FolderPage:
        """``prefix`` is a folder (``data/raw/``) or empty for the top; a sub-folder's size
        and file count cover everything below it."""
        try:
            canonical = folder_prefix(prefix)
        except ValueError as exc:
            raise invalid("prefix", str(exc).removeprefix("prefix ")) from None
        return await attachments.list_folder(
            db, principal, group, canonical, limit=limit, offset=offset
        )

    @get("/info", summary="One attachment's metadata")
    async def get_attachment(
        self, db: DB, principal: Caller, group: Name, key: Key
    ) -> AttachmentInfo:
        return await attachments.get_attachment(db, principal, group, key)

    @get("/download", summary="A download URL for one attachment")
    async def download(
        self, db: DB, principal: Caller, objects: Files, group: Name, key: Key
    ) -> AttachmentLink:
        return await attachments.download_link(db, objects, principal, group, key)

    @post("/links", status_code=HTTP_200_OK, summary="Download URLs for keys, a filter or all")
    async def links(
        self,
        db: DB,
        principal: Caller,
        objects: Files,
        group: Name,
        data: JSONBody[AttachmentSelection],
    ) -> AttachmentLinks:
        return await attachments.download_links(db, objects, principal, group, data)

    @delete("/", status_code=HTTP_204_NO_CONTENT, summary="Delete one attachment (needs write)")
    async def delete_attachment(
        self, db: DB, principal: Caller, objects: Files, group: Name, key: Key
    ) -> None:
        await attachments.delete_attachment(db, objects, principal, group, key)

    @post("/delete", status_code=HTTP_200_OK, summary="Delete keys, a filter or all")
    async def delete_many(
        self,
        db: DB,
        principal: Caller,
        objects: Files,
        group: Name,
        data: JSONBody[AttachmentSelection],
    ) -> DeleteReply:
        return await attachments.delete_attachments(db, objects, principal, group, data)


ROUTES = [AttachmentController]
