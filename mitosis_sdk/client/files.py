"""Attachments, artifacts and task resources: the API calls, and helpers that move files.

The helpers (``upload_attachment``, ``download_artifact``, ``upload_attempt_artifact``,
``download_resources`` …) do the whole exchange: begin, stream the bytes to or from the
presigned URLs (:mod:`mitosis_sdk.transfers`), complete; an upload that fails midway is
aborted so its quota reservation is given back at once.

Transfers use their own HTTP client, which never sends the coordinator's token. Its
transport is injectable (``transfer_transport``); URLs that point at the coordinator itself
(the local object store's) go through the API client's ``transport``, so a test or an
embedder that runs the app in-process reaches both the API and its files the same way::

    async with AsyncClient(url, transport=httpx.ASGITransport(app)) as mito:
        await mito.upload_attachment("lab", "data.tar.gz", "data/")
"""

from __future__ import annotations

import contextlib
import mimetypes
import uuid
from pathlib import Path
from typing import Any

import httpx

from mitosis_sdk.client.base import BaseClient
from mitosis_sdk.errors import MitosisError
from mitosis_sdk.keys import safe_relative_path, upload_key
from mitosis_sdk.schemas import ArtifactType
from mitosis_sdk.schemas.files import (
    ArtifactInfo,
    ArtifactLink,
    ArtifactLinks,
    ArtifactSelection,
    ArtifactUploadBegin,
    AttachmentInfo,
    AttachmentLink,
    AttachmentLinks,
    AttachmentPage,
    AttachmentSelection,
    AttachmentUploadBegin,
    CompletedPart,
    DeleteReply,
    FolderPage,
    ResourceLink,
    RetentionInfo,
    RetentionUpdate,
    UploadComplete,
    UploadTicket,
)
from mitosis_sdk.transfers import Progress, TransferError, get_file, put_file

TRANSFER_TIMEOUT = httpx.Timeout(120.0, connect=30.0, pool=None)

Task = uuid.UUID | str


def _kind(kind: ArtifactType | str) -> str:
    return ArtifactType(kind).value


class FilesAPI(BaseClient):
    def __init__(
        self,
        *args: Any,
        transfer_transport: httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        mounts = None
        if kwargs.get("transport") is not None:
            origin = httpx.URL(self.base_url)
            mounts = {f"all://{origin.netloc.decode()}": kwargs["transport"]}
        self._transfers = httpx.AsyncClient(
            transport=transfer_transport, mounts=mounts, timeout=TRANSFER_TIMEOUT
        )

    async def aclose(self) -> None:
        await self._transfers.aclose()
        await super().aclose()

    # --- transfers ------------------------------------------------------------------------

    async def _send(self, ticket: UploadTicket, path: Path, progress, complete, abort):
        """PUT ``path`` per ``ticket`` and complete it; abort (give the quota back) on failure."""
        try:
            parts = await put_file(self._transfers, ticket.upload, path, progress)
            return await complete(parts)
        except BaseException:
            with contextlib.suppress(MitosisError):
                await abort()
            raise

    async def download_url(
        self,
        url: str,
        dest: str | Path,
        *,
        size: int | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Save what a download URL serves as ``dest``; returns the number of bytes."""
        return await get_file(self._transfers, url, dest, size=size, progress=progress)

    # --- attachments ----------------------------------------------------------------------

    def _attachments(self, group: str) -> str:
        return f"/api/groups/{group}/attachments"

    async def begin_attachment_upload(
        self, group: str, key: str, size: int, content_type: str | None = None
    ) -> UploadTicket:
        body = AttachmentUploadBegin(key=key, size=size, content_type=content_type)
        return await self.request(
            "POST", f"{self._attachments(group)}/uploads", body=body, result=UploadTicket
        )

    async def complete_attachment_upload(
        self, group: str, upload_id: uuid.UUID, parts: list[CompletedPart] = ()
    ) -> AttachmentInfo:
        return await self.request(
            "POST",
            f"{self._attachments(group)}/uploads/{upload_id}/complete",
            body=UploadComplete(parts=list(parts)),
            result=AttachmentInfo,
        )

    async def abort_attachment_upload(self, group: str, upload_id: uuid.UUID) -> None:
        await self.request("DELETE", f"{self._attachments(group)}/uploads/{upload_id}")

    async def upload_attachment(
        self,
        group: str,
        path: str | Path,
        key: str | None = None,
        *,
        content_type: str | None = None,
        progress: Progress | None = None,
    ) -> AttachmentInfo:
        """Upload a local file. ``key`` defaults to the file's name; a key ending in ``/`` is
        a folder the file goes into (ValueError for a key that breaks the rules). Raises
        QuotaExceeded before any byte is sent when the group has no room."""
        path = Path(path)
        if not path.is_file():
            raise TransferError(f"{path} is not a file")
        key = upload_key(key, path.name)
        content_type = content_type or mimetypes.guess_type(path.name)[0]
        ticket = await self.begin_attachment_upload(group, key, path.stat().st_size, content_type)
        return await self._send(
            ticket,
            path,
            progress,
            lambda parts: self.complete_attachment_upload(group, ticket.id, parts),
            lambda: self.abort_attachment_upload(group, ticket.id),
        )

    async def get_attachment(self, group: str, key: str) -> AttachmentInfo:
        return await self.request(
            "GET", f"{self._attachments(group)}/info", params={"key": key}, result=AttachmentInfo
        )

    async def query_attachments(
        self,
        group: str,
        *,
        prefix: str | None = None,
        contains: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> AttachmentPage:
        """A page of a group's attachments in key order, with the total count."""
        params = {"prefix": prefix, "contains": contains, "limit": limit, "offset": offset}
        return await self.request(
            "GET", self._attachments(group), params=params, result=AttachmentPage
        )

    async def list_attachment_folder(
        self, group: str, prefix: str = "", *, limit: int = 100, offset: int = 0
    ) -> FolderPage:
        """A page of one folder's entries (``prefix`` such as ``data/``; empty: the top):
        sub-folders (with the size and count of the files below them) first, then files."""
        params = {"prefix": prefix or None, "limit": limit, "offset": offset}
        return await self.request(
            "GET", f"{self._attachments(group)}/folder", params=params, result=FolderPage
        )

    async def attachment_link(self, group: str, key: str) -> AttachmentLink:
        return await self.request(
            "GET",
            f"{self._attachments(group)}/download",
            params={"key": key},
            result=AttachmentLink,
        )

    async def attachment_links(self, group: str, selection: AttachmentSelection) -> AttachmentLinks:
        return await self.request(
            "POST", f"{self._attachments(group)}/links", body=selection, result=AttachmentLinks
        )

    async def download_attachment(
        self, group: str, key: str, dest: str | Path, *, progress: Progress | None = None
    ) -> Path:
        """Save an attachment as ``dest`` (a directory: under the key's last segment)."""
        link = await self.attachment_link(group, key)
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / link.key.rpartition("/")[2]
        await self.download_url(link.url, dest, size=link.size, progress=progress)
        return dest

    async def delete_attachment(self, group: str, key: str) -> None:
        await self.request("DELETE", self._attachments(group), params={"key": key})

    async def delete_attachments(self, group: str, selection: AttachmentSelection) -> DeleteReply:
        return await self.request(
            "POST", f"{self._attachments(group)}/delete", body=selection, result=DeleteReply
        )

    # --- artifacts ------------------------------------------------------------------------

    async def list_artifacts(self, task: Task) -> list[ArtifactInfo]:
        return await self.request("GET", f"/api/tasks/{task}/artifacts", result=list[ArtifactInfo])

    async def artifact_link(self, task: Task, kind: ArtifactType | str) -> ArtifactLink:
        return await self.request(
            "GET", f"/api/tasks/{task}/artifacts/{_kind(kind)}/download", result=ArtifactLink
        )

    async def artifact_links(self, selection: ArtifactSelection) -> ArtifactLinks:
        """URLs for the artifacts of many tasks (``selection.filter``), a page at a time."""
        return await self.request(
            "POST", "/api/artifacts/links", body=selection, result=ArtifactLinks
        )

    async def download_artifact(
        self,
        task: Task,
        kind: ArtifactType | str,
        dest: str | Path,
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Save an artifact (a tar.gz) as ``dest`` (a directory: ``<uuid>-<type>.tar.gz``)."""
        link = await self.artifact_link(task, kind)
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / f"{link.task}-{link.type}.tar.gz"
        await self.download_url(link.url, dest, size=link.size, progress=progress)
        return dest

    async def delete_artifact(self, task: Task, kind: ArtifactType | str) -> None:
        await self.request("DELETE", f"/api/tasks/{task}/artifacts/{_kind(kind)}")

    async def delete_artifacts(self, selection: ArtifactSelection) -> DeleteReply:
        return await self.request(
            "POST", "/api/artifacts/delete", body=selection, result=DeleteReply
        )

    async def upload_artifact(
        self,
        task: Task,
        kind: ArtifactType | str,
        path: str | Path,
        *,
        progress: Progress | None = None,
    ) -> ArtifactInfo:
        """Upload a local file as a task's artifact (needs ``write``; replaces one there)."""
        return await self._upload_artifact(
            f"/api/tasks/{task}/artifacts", kind, path, None, progress
        )

    async def _upload_artifact(
        self,
        base: str,
        kind: ArtifactType | str,
        path: str | Path,
        attempt: int | None,
        progress: Progress | None,
    ) -> ArtifactInfo:
        """Begin, send, complete (or abort) one artifact upload under ``base``."""
        path = Path(path)
        ticket = await self.request(
            "POST",
            f"{base}/{_kind(kind)}/uploads",
            body=ArtifactUploadBegin(size=path.stat().st_size, attempt=attempt),
            result=UploadTicket,
        )
        return await self._send(
            ticket,
            path,
            progress,
            lambda parts: self.request(
                "POST",
                f"{base}/uploads/{ticket.id}/complete",
                body=UploadComplete(parts=parts),
                result=ArtifactInfo,
            ),
            lambda: self.request("DELETE", f"{base}/uploads/{ticket.id}"),
        )

    async def get_retention(self, group: str) -> RetentionInfo:
        return await self.request("GET", f"/api/groups/{group}/retention", result=RetentionInfo)

    async def set_retention(self, group: str, days: int | None) -> RetentionInfo:
        """Delete the group's artifacts once ``days`` old (None: keep them); group admins."""
        return await self.request(
            "PUT",
            f"/api/groups/{group}/retention",
            body=RetentionUpdate(artifact_days=days),
            result=RetentionInfo,
        )

    # --- the worker daemon, with its own token --------------------------------------------

    async def upload_attempt_artifact(
        self,
        worker: Task,
        task: Task,
        attempt: int,
        kind: ArtifactType | str,
        path: str | Path,
        *,
        progress: Progress | None = None,
    ) -> ArtifactInfo:
        """Upload an artifact of the attempt this worker holds. Conflict (409) when the
        attempt was superseded or has ended; the upload is then aborted, nothing is kept."""
        return await self._upload_artifact(
            f"/api/workers/{worker}/tasks/{task}/artifacts", kind, path, attempt, progress
        )

    async def task_resources(self, worker: Task, task: Task, attempt: int) -> list[ResourceLink]:
        """Download URLs of a task's resources. NotFound / Forbidden name the resource that
        is missing or that the task's creator may not read (fail the task: resource_error)."""
        return await self.request(
            "GET",
            f"/api/workers/{worker}/tasks/{task}/resources",
            params={"attempt": attempt},
            result=list[ResourceLink],
        )

    async def download_resources(
        self,
        worker: Task,
        task: Task,
        attempt: int,
        directory: str | Path,
        *,
        progress: Progress | None = None,
    ) -> list[Path]:
        """Download every resource of a task into ``directory`` (``MITO_RESOURCE_DIR``).

        Each resource's path is checked again here: one that would land outside
        ``directory`` (``..``, absolute, through a symlink) raises TransferError before any
        byte is written.
        """
        directory = Path(directory)
        links = await self.task_resources(worker, task, attempt)
        targets = [path_inside(directory, link.path) for link in links]
        for link, target in zip(links, targets, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            await self.download_url(link.url, target, size=link.size, progress=progress)
        return targets


def path_inside(directory: Path, path: str) -> Path:
    """``directory / path`` for a relative path taken from elsewhere (a resource's path, an
    attachment key), or TransferError when it would land outside ``directory``."""
    try:
        relative = safe_relative_path(path)
    except ValueError as exc:
        raise TransferError(f"path {path!r}: {exc}") from None
    root = directory.resolve()
    target = root / relative
    # resolve() follows the symlinks that exist on the way (one left by an earlier resource,
    # say): wherever they lead must still be inside the directory.
    if not target.resolve().is_relative_to(root):
        raise TransferError(f"path {path!r} leads outside {directory}")
    return target
