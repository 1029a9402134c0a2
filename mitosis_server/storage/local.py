"""The local-directory backend (embedded default): the coordinator serves its own signed URLs.

It behaves like S3 from the outside, so workers and clients have one code path: a URL such as
``{base_url}/objects/attachments/data/x.tar.gz?op=put&size=…&exp=…&sig=…`` is HMAC-signed over
the bucket, the key and every query parameter, expires, and accepts exactly the declared size
(``mitosis_server.api.objects`` serves it). The signing secret lives in a file under the data
directory, so URLs survive a restart.

Objects are stored under the SHA-256 of their key (``<root>/<bucket>/ab/ab12…``), never under a
path built from the key: no key, however crafted, can name a file outside the store, and keys
``a`` and ``a/b`` can both exist, as on S3. Every write goes to a scratch file first and is
renamed into place once complete and synced, so readers see the old object or the new one,
never a part.

Bytes are moved at the speed of the disk: received chunks are gathered into 4 MiB writes (one
thread hop each, not one per network chunk), and a multipart upload is one file from the
start, ``<root>/.uploads/<id>/data``, each part written at its own offset (signed into its URL)
— completing is a truncate and a rename, never a copy. Integrity is the exact size every URL
is signed for; an ETag is an opaque random token naming one stored part (S3 documents its
ETags as opaque too), so no digest is computed. A part is answered only after its bytes are
on disk (``fdatasync``) and its marker ``<number>-<etag>`` exists; a second PUT of the same part
takes the part's lock first and drops the old marker before touching its bytes, so completing
with an ETag always names the bytes that are there. A single PUT is ``fsync``-ed before the
rename and the answer.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import anyio

from mitosis_server.storage.base import (
    MAX_PARTS,
    BucketKind,
    CompletedPart,
    ObjectStore,
    StorageError,
    UploadIncomplete,
    check_key,
)
from mitosis_server.storage.local_files import (
    PartBusy,
    SizeMismatch,
    drop_markers,
    install,
    join_parts,
    lock_part,
    write_body,
)

__all__ = [
    "ROUTE",
    "Grant",
    "InvalidGrant",
    "LocalStore",
    "PartBusy",
    "SizeMismatch",
    "load_secret",
]

ROUTE = "/objects"
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


class InvalidGrant(StorageError):
    """A URL that is not one we signed, was altered, or has expired."""


@dataclass(frozen=True)
class Grant:
    """What a verified URL allows: ``get`` the object, ``put`` it, or ``put`` one ``part``."""

    op: str
    bucket: BucketKind
    key: str
    size: int | None = None
    upload_id: str | None = None
    part: int | None = None
    offset: int | None = None
    filename: str | None = None


def load_secret(path: str | Path) -> bytes:
    """The URL-signing secret stored at ``path``, created (32 random bytes, mode 0600) if absent."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_bytes()
    with os.fdopen(fd, "wb") as file:
        file.write(secret)
    return secret


class LocalStore(ObjectStore):
    def __init__(
        self,
        root: str | Path,
        base_url: str,
        secret: bytes,
        *,
        multipart_threshold: int = 256 * 2**20,
        part_size: int = 64 * 2**20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(multipart_threshold=multipart_threshold, part_size=part_size, clock=clock)
        if len(secret) < 16:
            raise ValueError("the URL-signing secret must be at least 16 bytes")
        self.root = Path(root)
        self.base_url = base_url.rstrip("/")
        self._secret = secret

    # -- layout -----------------------------------------------------------------------------

    def object_path(self, bucket: BucketKind, key: str) -> Path:
        digest = hashlib.sha256(check_key(key).encode()).hexdigest()
        return self.root / BucketKind(bucket).value / digest[:2] / digest

    def _upload_dir(self, upload_id: str) -> Path:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise UploadIncomplete(f"no multipart upload {upload_id!r}")
        return self.root / ".uploads" / upload_id

    def _scratch(self) -> Path:
        return self.root / ".tmp" / secrets.token_hex(16)

    async def ensure_buckets(self) -> None:
        for folder in (*BucketKind, ".tmp", ".uploads"):
            await anyio.Path(self.root / folder).mkdir(parents=True, exist_ok=True)

    async def missing_buckets(self) -> list[str]:
        return [
            str(self.root / folder)
            for folder in (*BucketKind, ".tmp", ".uploads")
            if not await anyio.Path(self.root / folder).is_dir()
        ]

    # -- signed URLs ------------------------------------------------------------------------

    def _signature(self, bucket: str, key: str, params: Iterable[tuple[str, str]]) -> str:
        message = f"{bucket}\n{key}\n{urlencode(sorted(params))}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _url(self, bucket: BucketKind, key: str, params: dict[str, str], expires: int) -> str:
        params = {**params, "exp": str(int(self.clock()) + expires)}
        params["sig"] = self._signature(bucket.value, key, params.items())
        return f"{self.base_url}{ROUTE}/{bucket.value}/{quote(key, safe='/')}?{urlencode(params)}"

    def verify(self, method: str, bucket: str, key: str, query: Sequence[tuple[str, str]]) -> Grant:
        """The grant of a request to ``ROUTE/bucket/key?query``, or InvalidGrant.

        ``key`` must already be canonical (:func:`check_key`); any parameter added, removed or
        changed, and any other bucket or key, breaks the signature.
        """
        params = dict(query)
        signature = params.pop("sig", "")
        if len(params) + 1 != len(query):
            raise InvalidGrant("this URL repeats a parameter")
        expected = self._signature(bucket, key, params.items())
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise InvalidGrant("this URL's signature does not match the object or its terms")
        try:
            expired = self.clock() > int(params["exp"])
            grant = Grant(
                op=params["op"],
                bucket=BucketKind(bucket),
                key=key,
                size=int(params["size"]) if "size" in params else None,
                upload_id=params.get("upload"),
                part=int(params["part"]) if "part" in params else None,
                offset=int(params["offset"]) if "offset" in params else None,
                filename=params.get("filename"),
            )
        except (KeyError, ValueError):
            raise InvalidGrant("this URL lacks its terms") from None
        if expired:
            raise InvalidGrant("this URL has expired; ask for a new one")
        if (method == "GET") != (grant.op == "get"):
            raise InvalidGrant(f"this URL does not allow {method}")
        return grant

    async def _presign_put(self, bucket: BucketKind, key: str, size: int, expires: int) -> str:
        return self._url(bucket, key, {"op": "put", "size": str(size)}, expires)

    async def _start_multipart(self, bucket: BucketKind, key: str) -> str:
        upload_id = secrets.token_hex(16)
        folder = anyio.Path(self._upload_dir(upload_id))
        await folder.mkdir(parents=True)
        await (folder / "data").touch()
        await (folder / "owner").write_text(f"{bucket.value}\n{key}")
        return upload_id

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
        params = {"op": "put", "upload": upload_id, "part": str(number), "size": str(size)}
        return self._url(bucket, key, params | {"offset": str(offset)}, expires)

    async def _presign_get(self, bucket: BucketKind, key: str, expires: int, filename: str) -> str:
        return self._url(bucket, key, {"op": "get", "filename": filename}, expires)

    # -- bytes ------------------------------------------------------------------------------

    async def receive(self, grant: Grant, chunks: AsyncIterable[bytes]) -> str:
        """Store the body of a verified PUT (an object, or one part at its offset); returns
        its ETag, an opaque quoted token.

        Raises SizeMismatch as soon as the body passes the granted size, or at its end when it
        falls short; a refused single PUT keeps nothing, a refused part leaves the part
        without a marker (so it cannot be completed until sent again).
        """
        if grant.op != "put" or grant.size is None:
            raise InvalidGrant("this URL does not allow PUT")
        if grant.upload_id is not None:
            return await self._receive_part(grant, chunks)
        scratch = self._scratch()
        try:
            fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                await write_body(fd, 0, grant.size, chunks)
                await anyio.to_thread.run_sync(os.fsync, fd)
            finally:
                os.close(fd)
            target = self.object_path(grant.bucket, grant.key)
            await anyio.to_thread.run_sync(install, scratch, target, True)
        finally:
            await anyio.Path(scratch).unlink(missing_ok=True)
        return f'"{secrets.token_hex(16)}"'

    async def _receive_part(self, grant: Grant, chunks: AsyncIterable[bytes]) -> str:
        folder = self._upload_dir(grant.upload_id)
        if grant.part is None or grant.offset is None:
            raise InvalidGrant("this URL lacks its part terms")
        try:
            lock = await anyio.to_thread.run_sync(lock_part, folder, grant.part)
        except FileNotFoundError:
            raise UploadIncomplete(f"no multipart upload {grant.upload_id!r}") from None
        try:
            await anyio.to_thread.run_sync(drop_markers, folder, grant.part)
            fd = os.open(folder / "data", os.O_WRONLY)
            try:
                await write_body(fd, grant.offset, grant.size, chunks)
                await anyio.to_thread.run_sync(os.fdatasync, fd)
            finally:
                os.close(fd)
            token = secrets.token_hex(16)
            marker = folder / f"{grant.part:05d}-{token}"
            await anyio.Path(marker).write_text(f"{grant.offset} {grant.size}")
        except FileNotFoundError:
            raise UploadIncomplete(f"multipart upload {grant.upload_id!r} ended") from None
        finally:
            os.close(lock)
        return f'"{token}"'

    async def complete_multipart(
        self, bucket: BucketKind, key: str, upload_id: str, parts: Sequence[CompletedPart]
    ) -> int:
        folder = self._upload_dir(upload_id)
        target = self.object_path(bucket, key)
        try:
            owner = await anyio.Path(folder / "owner").read_text()
        except FileNotFoundError:
            raise UploadIncomplete(f"no multipart upload {upload_id!r}") from None
        if owner != f"{BucketKind(bucket).value}\n{key}":
            raise UploadIncomplete(f"multipart upload {upload_id!r} is not for {key!r}")
        numbers = [part.number for part in parts]
        if (
            not numbers
            or numbers != sorted(set(numbers))
            or numbers[0] < 1
            or numbers[-1] > MAX_PARTS
        ):
            raise UploadIncomplete("parts must be listed once each, in ascending order")
        size = await anyio.to_thread.run_sync(join_parts, folder, list(parts), target)
        await anyio.to_thread.run_sync(shutil.rmtree, folder, True)
        return size

    async def abort_multipart(self, bucket: BucketKind, key: str, upload_id: str) -> None:
        try:
            folder = self._upload_dir(upload_id)
        except UploadIncomplete:
            return
        await anyio.to_thread.run_sync(shutil.rmtree, folder, True)

    async def head(self, bucket: BucketKind, key: str) -> int | None:
        try:
            return (await anyio.Path(self.object_path(bucket, key)).stat()).st_size
        except FileNotFoundError:
            return None

    async def delete(self, bucket: BucketKind, keys: Iterable[str]) -> None:
        for path in [self.object_path(bucket, key) for key in keys]:
            await anyio.Path(path).unlink(missing_ok=True)
