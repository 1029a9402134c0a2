"""Files on the wire (FEATURES F1-F5, T1 resources): attachments, artifacts, uploads, links.

Bytes never travel in these messages. An upload is two calls around a transfer: *begin*
(the coordinator checks the role, the key and the quota, reserves the declared size and
answers with an :class:`UploadTicket` holding presigned URLs), the PUTs to those URLs, then
*complete* (the coordinator checks the stored size and records the file). Downloads are
links: a presigned URL, the size and when the URL expires.

Attachment keys are checked on construction with :mod:`mitosis_sdk.keys`, on the client
before it sends and again by the coordinator as it decodes, so a key with ``..``, a leading
``/``, ``//``, NUL or more than 1024 bytes is a 400 naming the rule.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from mitosis_sdk.keys import is_folder, normalize_key
from mitosis_sdk.schemas.common import Struct
from mitosis_sdk.schemas.limits import MAX_BATCH, MAX_PAGE
from mitosis_sdk.schemas.tasks import ArtifactType, TaskFilter

MAX_OBJECT_SIZE = 5 * 2**40  # S3's limit, kept by every backend so moving between them is safe
MAX_PARTS = 10_000  # S3's limit on parts per multipart upload

ObjectSize = Annotated[
    int, msgspec.Meta(ge=0, le=MAX_OBJECT_SIZE, description="bytes, at most 5 TiB")
]
ContentType = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][\w!#$&^.+-]{0,126}/[A-Za-z0-9][\w!#$&^.+-]{0,126}$",
        description="a media type such as application/gzip",
    ),
]
# Raw key text is bounded before normalisation; the 1024-byte rule is checked after.
KeyText = Annotated[str, msgspec.Meta(max_length=4096)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, msgspec.Meta(ge=0)]


def file_key(text: str, field: str = "key") -> str:
    """The canonical form of an attachment key naming a file (not a folder); ValueError
    naming ``field`` and the rule otherwise."""
    try:
        key = normalize_key(text)
    except ValueError as exc:  # "key must not …", with the field's own name
        raise ValueError(field + str(exc).removeprefix("key")) from None
    if is_folder(key):
        raise ValueError(f"{field} {key!r} names a folder; name a file inside it")
    return key


# --- transfers (what the coordinator hands out, what the client reports back) --------------


class PartUpload(Struct):
    """One part: PUT bytes ``[offset, offset + size)`` of the file to ``url`` with ``headers``."""

    number: int
    offset: int
    size: int
    url: str
    headers: dict[str, str]


class MultipartPlan(Struct):
    upload_id: str
    part_size: int
    parts: list[PartUpload]


class Upload(Struct):
    """How to send one object: PUT the whole file to ``url``, or each part of ``multipart``.

    ``headers`` (with ``Content-Length``) must be sent as given: the URL is signed for them.
    ``expires_at`` is when the URLs stop working (seconds since the epoch).
    """

    expires_at: int
    method: str = "PUT"
    url: str | None = None
    headers: dict[str, str] = {}
    multipart: MultipartPlan | None = None


class CompletedPart(Struct):
    """A part as its PUT answered: the number it was sent as and the ``ETag`` reply header."""

    number: Annotated[int, msgspec.Meta(ge=1, le=MAX_PARTS)]
    etag: Annotated[str, msgspec.Meta(max_length=256)]


class UploadTicket(Struct):
    """A begun upload: send the bytes as ``upload`` says, then complete it (or abort it)
    with ``id`` before ``complete_by``; the declared ``size`` is reserved in the quota."""

    id: uuid.UUID
    size: int
    complete_by: datetime
    upload: Upload


class UploadComplete(Struct):
    """The parts of a multipart upload, ascending; empty for a single PUT."""

    parts: Annotated[list[CompletedPart], msgspec.Meta(max_length=MAX_PARTS)] = []


class DeleteReply(Struct):
    """How many files were deleted and how many bytes of quota that gave back."""

    deleted: int
    freed: int


# --- attachments (group files, FEATURES F3) ------------------------------------------------


class AttachmentUploadBegin(Struct):
    """Upload ``size`` bytes as ``key`` (a file key; the client resolves folder keys)."""

    key: KeyText
    size: ObjectSize
    content_type: ContentType | None = None

    def __post_init__(self) -> None:
        self.key = file_key(self.key)


class AttachmentInfo(Struct):
    group: str
    key: str
    size: int
    content_type: str | None
    creator: str
    created_at: datetime
    updated_at: datetime


class AttachmentPage(Struct):
    attachments: list[AttachmentInfo]
    total: int


def folder_prefix(text: str | None) -> str:
    """The canonical form of a folder prefix (``data/raw/``; empty or None: the top), or
    ValueError naming the rule it breaks."""
    if not text:
        return ""
    try:
        prefix = normalize_key(text)
    except ValueError as exc:
        raise ValueError("prefix" + str(exc).removeprefix("key")) from None
    if not is_folder(prefix):
        raise ValueError(f"prefix {prefix!r} names a file; a folder ends with '/'")
    return prefix


class FolderEntry(Struct):
    """One name directly inside a folder: a file (``attachment`` set) or a sub-folder
    (``name`` ends with ``/``; ``size``, ``files`` and ``updated_at`` cover everything in it).
    ``key`` is the file's key or the sub-folder's prefix."""

    name: str
    key: str
    folder: bool
    size: int
    files: int
    updated_at: datetime
    attachment: AttachmentInfo | None = None


class FolderPage(Struct):
    """A page of a folder's entries, sub-folders first, each kind in name order; ``total``
    counts the folder's entries (not the files below them)."""

    prefix: str
    entries: list[FolderEntry]
    total: int


class AttachmentLink(Struct):
    """A download URL for one attachment, valid until ``expires_at`` (epoch seconds)."""

    key: str
    size: int
    url: str
    expires_at: int


class AttachmentSelection(Struct):
    """Some attachments of a group: the listed ``keys``, or those whose key starts with
    ``prefix`` and/or contains ``contains``, or (``all``) every one. Pages by key."""

    keys: Annotated[list[KeyText], msgspec.Meta(max_length=MAX_BATCH)] = []
    prefix: KeyText | None = None
    contains: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None
    all: bool = False
    limit: Limit = MAX_PAGE
    offset: Offset = 0

    def __post_init__(self) -> None:
        self.keys = [file_key(key, "keys") for key in self.keys]
        if self.prefix is not None:
            try:
                self.prefix = normalize_key(self.prefix)
            except ValueError as exc:
                raise ValueError("prefix" + str(exc).removeprefix("key")) from None
        by_filter = self.prefix is not None or self.contains is not None
        if sum((bool(self.keys), by_filter, self.all)) != 1:
            raise ValueError("give exactly one of 'keys', a filter ('prefix'/'contains') or 'all'")

    @property
    def filtered(self) -> bool:
        return not self.keys


class AttachmentLinks(Struct):
    links: list[AttachmentLink]
    total: int


# --- artifacts (task outputs, FEATURES F2, X4) ---------------------------------------------


class ArtifactUploadBegin(Struct):
    """Upload ``size`` bytes as a task's artifact. Workers name the ``attempt`` they hold;
    users leave it out."""

    size: ObjectSize
    attempt: Annotated[int, msgspec.Meta(ge=1)] | None = None


class ArtifactInfo(Struct):
    """``attempt`` is the attempt whose worker uploaded it; None when a user did."""

    task: uuid.UUID
    type: ArtifactType
    size: int
    created_at: datetime
    uploaded_by: str
    attempt: int | None = None


class ArtifactLink(Struct):
    task: uuid.UUID
    type: ArtifactType
    size: int
    url: str
    expires_at: int


class ArtifactSelection(Struct):
    """Artifacts of one ``type`` (every type when None) of the tasks matching ``filter``;
    ``filter.uuids`` selects by UUID list. Pages by task."""

    filter: TaskFilter
    type: ArtifactType | None = None
    limit: Limit = MAX_PAGE
    offset: Offset = 0


class ArtifactLinks(Struct):
    links: list[ArtifactLink]
    total: int


# --- resources (FEATURES T1, X3): what a worker downloads before it starts a task -----------


class ResourceLink(Struct):
    """One resource of a task: save the bytes at ``url`` as ``MITO_RESOURCE_DIR/path``."""

    path: str
    size: int
    url: str
    expires_at: int
    attachment: str | None = None
    artifact: uuid.UUID | None = None
    type: ArtifactType | None = None


# --- retention (FEATURES F5) -------------------------------------------------------------------


class RetentionUpdate(Struct):
    """Delete a group's artifacts once they are ``artifact_days`` old; None keeps them."""

    artifact_days: Annotated[int, msgspec.Meta(ge=1, le=36500)] | None


class RetentionInfo(Struct):
    group: str
    artifact_days: int | None
