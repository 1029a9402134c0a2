"""The object-store interface: buckets of immutable blobs reached through short-lived URLs.

Artifacts and attachments are bytes the coordinator should never carry: it hands out a
presigned URL, the worker or client moves the bytes, the coordinator records the result. Two
backends stand behind this one interface, S3 (any compatible service) and a local directory
(the embedded default, whose URLs the coordinator serves itself), and one contract suite
drives both exactly as workers and clients do.

Every upload URL is bound to the key, the exact size and an expiry: sending more bytes than
declared, after the deadline or to another key is refused by whoever holds the bytes. Objects
larger than ``multipart_threshold`` are sent in parts of ``part_size`` bytes, each with its own
URL; the caller then reports each part's ETag (from the part PUT's reply) and the coordinator
calls :meth:`ObjectStore.complete_multipart`. The part plan is computed here, once, for both
backends.

The :class:`Upload` types are what a worker or client receives, so they live in the SDK's wire
schemas (:mod:`mitosis_sdk.schemas.files`) and are re-exported here. Errors the services
translate::

    StorageError            the store failed or refused (unreachable, bucket forbidden …)
    └── UploadIncomplete    a multipart upload cannot complete: unknown id, missing part,
                            ETag mismatch, parts out of order
"""

from __future__ import annotations

import abc
import enum
import math
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Self
from urllib.parse import quote

from mitosis_sdk.keys import is_folder, normalize_key
from mitosis_sdk.schemas.files import (
    MAX_OBJECT_SIZE,
    MAX_PARTS,
    CompletedPart,
    MultipartPlan,
    PartUpload,
    Upload,
)

__all__ = [
    "MAX_EXPIRY",
    "MAX_OBJECT_SIZE",
    "MAX_PARTS",
    "MIN_PART_SIZE",
    "BucketKind",
    "CompletedPart",
    "MultipartPlan",
    "ObjectStore",
    "PartUpload",
    "StorageError",
    "Upload",
    "UploadIncomplete",
    "check_key",
    "content_disposition",
]

MAX_EXPIRY = 7 * 86400  # SigV4's limit on presigned URL lifetime
MIN_PART_SIZE = 5 * 2**20  # S3 refuses smaller parts (except the last) at completion
MAX_SINGLE_PUT = 5 * 2**30  # S3 refuses larger single PUTs


class BucketKind(enum.StrEnum):
    """What a bucket holds; each maps to one configured bucket (S3) or folder (local)."""

    ARTIFACTS = "artifacts"
    ATTACHMENTS = "attachments"


class StorageError(Exception):
    """The object store failed or refused an operation; the message says which and why."""


class UploadIncomplete(StorageError):
    """A multipart upload cannot be completed as asked (see the module docstring)."""


def check_key(key: str) -> str:
    """``key`` if it is a canonical object key (a file, not a folder); ValueError otherwise.

    Services normalise keys at the edge; a non-canonical key reaching a store is a bug, and
    refusing it keeps two spellings from becoming two objects.
    """
    if normalize_key(key) != key or is_folder(key):
        raise ValueError(f"object key {key!r} is not a canonical file key")
    return key


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback and the exact UTF-8 name (RFC 6266)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _check_expiry(expires: float) -> int:
    if not 1 <= expires <= MAX_EXPIRY:
        raise ValueError(f"URL lifetime must be 1 s to 7 days, got {expires}")
    return int(expires)


class ObjectStore(abc.ABC):
    """Presigned access to two buckets of objects; see the module docstring for the contract.

    Use as ``async with store:`` (or :meth:`open` / :meth:`close`), then call
    :meth:`ensure_buckets` once at start-up.
    """

    def __init__(
        self,
        *,
        multipart_threshold: int,
        part_size: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part size must be at least {MIN_PART_SIZE} bytes (5 MiB)")
        if not part_size <= multipart_threshold <= MAX_SINGLE_PUT:
            raise ValueError("the multipart threshold must be between one part and 5 GiB")
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.clock = clock

    # Optional hooks, not abstract: the local store holds no connections.
    async def open(self) -> None:  # noqa: B027
        """Acquire connections."""

    async def close(self) -> None:  # noqa: B027
        """Release what :meth:`open` acquired."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def ensure_buckets(self) -> None:
        """Create the buckets that do not exist yet; safe to run from many replicas at once."""

    @abc.abstractmethod
    async def missing_buckets(self) -> list[str]:
        """The buckets that do not exist (yet), by name; StorageError when the store cannot
        be asked. Changes nothing (``mitosis-server check``)."""

    async def presign_upload(
        self, bucket: BucketKind, key: str, size: int, expires: float
    ) -> Upload:
        """Where and how to PUT ``size`` bytes as ``key`` during the next ``expires`` seconds."""
        check_key(key)
        if not 0 <= size <= MAX_OBJECT_SIZE:
            raise ValueError(f"object size must be 0 to {MAX_OBJECT_SIZE} bytes, got {size}")
        expires = _check_expiry(expires)
        expires_at = int(self.clock()) + expires
        if size <= self.multipart_threshold:
            url = await self._presign_put(bucket, key, size, expires)
            return Upload(url=url, headers=_length(size), expires_at=expires_at)
        part_size = max(self.part_size, math.ceil(size / MAX_PARTS))
        upload_id = await self._start_multipart(bucket, key)
        parts = []
        for index, offset in enumerate(range(0, size, part_size)):
            length = min(part_size, size - offset)
            url = await self._presign_part(
                bucket, key, upload_id, index + 1, offset, length, expires
            )
            parts.append(
                PartUpload(
                    number=index + 1, offset=offset, size=length, url=url, headers=_length(length)
                )
            )
        plan = MultipartPlan(upload_id=upload_id, part_size=part_size, parts=parts)
        return Upload(multipart=plan, expires_at=expires_at)

    @abc.abstractmethod
    async def _presign_put(self, bucket: BucketKind, key: str, size: int, expires: int) -> str:
        """A URL accepting exactly ``size`` bytes for ``key`` in one PUT."""

    @abc.abstractmethod
    async def _start_multipart(self, bucket: BucketKind, key: str) -> str:
        """A new multipart upload's id."""

    @abc.abstractmethod
    async def _presign_part(
        self,
        bucket: BucketKind,
        key: str,
        upload_id: str,
        number: int,
        offset: int,
        size: int,
        expires: int,
    ) -> str:
        """A URL accepting exactly ``size`` bytes as part ``number`` of ``upload_id``, the
        object's bytes from ``offset``."""

    @abc.abstractmethod
    async def complete_multipart(
        self, bucket: BucketKind, key: str, upload_id: str, parts: Sequence[CompletedPart]
    ) -> int:
        """Join the parts (ascending numbers) into ``key``; returns the object's stored size.

        Raises :class:`UploadIncomplete` when the upload is unknown or a part is missing or
        differs from its ETag. The caller compares the size with the one it granted.
        """

    @abc.abstractmethod
    async def abort_multipart(self, bucket: BucketKind, key: str, upload_id: str) -> None:
        """Drop an unfinished multipart upload and its parts; unknown ids are ignored."""

    async def presign_download(
        self, bucket: BucketKind, key: str, expires: float, filename: str | None = None
    ) -> str:
        """A URL that GETs ``key`` during the next ``expires`` seconds, saved as ``filename``
        (default: the key's last segment)."""
        check_key(key)
        filename = filename or key.rpartition("/")[2]
        return await self._presign_get(bucket, key, _check_expiry(expires), filename)

    @abc.abstractmethod
    async def _presign_get(self, bucket: BucketKind, key: str, expires: int, filename: str) -> str:
        """A URL that GETs ``key`` with ``Content-Disposition: attachment`` for ``filename``."""

    @abc.abstractmethod
    async def head(self, bucket: BucketKind, key: str) -> int | None:
        """The stored size of ``key``, or None when there is no such object."""

    @abc.abstractmethod
    async def delete(self, bucket: BucketKind, keys: Iterable[str]) -> None:
        """Remove ``keys``; keys that do not exist are not an error."""


def _length(size: int) -> dict[str, str]:
    return {"Content-Length": str(size)}
