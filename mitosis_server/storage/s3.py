"""The S3 backend (AWS, MinIO, Ceph …): bytes go between S3 and the caller, never through us.

Upload URLs are SigV4 presigned PUTs with ``Content-Length`` among the signed headers, so S3
itself refuses a body of any other size; parts of a large object are presigned ``UploadPart``
requests signed the same way. Checksums are only added where S3 requires them: the newer
default (a CRC on every request) puts parameters into presigned URLs that several S3-compatible
services reject.

``public_url`` covers the common deployment where the coordinator reaches S3 at one address
(``http://minio:9000`` inside a cluster) and workers and clients at another: URLs are signed
for the public address, API calls go to the private one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from mitosis_server.storage.base import (
    BucketKind,
    CompletedPart,
    ObjectStore,
    StorageError,
    UploadIncomplete,
    check_key,
    content_disposition,
)

__all__ = ["S3Store"]

_DELETE_BATCH = 1000  # S3's limit per DeleteObjects request
_INCOMPLETE = {"InvalidPart", "InvalidPartOrder", "NoSuchUpload", "EntityTooSmall"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    def __init__(
        self,
        *,
        endpoint_url: str | None,
        region: str,
        access_key: str | None,
        secret_key: str | None,
        buckets: Mapping[BucketKind, str],
        path_style: bool = True,
        public_url: str | None = None,
        timeout: float = 30.0,
        multipart_threshold: int = 256 * 2**20,
        part_size: int = 64 * 2**20,
    ) -> None:
        super().__init__(multipart_threshold=multipart_threshold, part_size=part_size)
        missing = set(BucketKind) - set(buckets)
        if missing:
            raise ValueError(f"no bucket configured for {', '.join(sorted(missing))}")
        self.buckets = dict(buckets)
        self.region = region
        self._endpoint_url = endpoint_url
        self._public_url = public_url
        self._session = aioboto3.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
        )
        self._config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "virtual"},
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "max_attempts": 3},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._signer: Any = None

    async def open(self) -> None:
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(self._new_client(self._endpoint_url))
        self._signer = self._client
        if self._public_url:
            self._signer = await stack.enter_async_context(self._new_client(self._public_url))
        self._stack = stack

    def _new_client(self, endpoint_url: str | None) -> Any:
        return self._session.client("s3", endpoint_url=endpoint_url, config=self._config)

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = self._client = self._signer = None

    def _api(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3Store used before open()")
        return self._client

    async def ensure_buckets(self) -> None:
        for name in self.buckets.values():
            try:
                await self._api().head_bucket(Bucket=name)
                continue
            except ClientError as exc:
                if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise StorageError(f"S3 bucket {name!r}: {_code(exc)}: {exc}") from exc
            except BotoCoreError as exc:
                raise StorageError(f"S3 is unreachable: {exc}") from exc
            where = {}
            if self.region != "us-east-1":
                where = {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
            try:
                await self._api().create_bucket(Bucket=name, **where)
            except ClientError as exc:
                if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise StorageError(f"cannot create S3 bucket {name!r}: {exc}") from exc

    async def missing_buckets(self) -> list[str]:
        missing = []
        for name in self.buckets.values():
            try:
                await self._api().head_bucket(Bucket=name)
            except ClientError as exc:
                if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise StorageError(f"S3 bucket {name!r}: {_code(exc)}: {exc}") from exc
                missing.append(name)
            except BotoCoreError as exc:
                raise StorageError(f"S3 is unreachable: {exc}") from exc
        return missing

    async def _presign(self, method: str, params: dict[str, Any], expires: int) -> str:
        if self._signer is None:
            raise RuntimeError("S3Store used before open()")
        try:
            return await self._signer.generate_presigned_url(
                method, Params=params, ExpiresIn=expires
            )
        except BotoCoreError as exc:  # no credentials, bad parameters
            raise StorageError(f"cannot sign an S3 URL: {exc}") from exc

    async def _presign_put(self, bucket: BucketKind, key: str, size: int, expires: int) -> str:
        params = {"Bucket": self.buckets[bucket], "Key": key, "ContentLength": size}
        return await self._presign("put_object", params, expires)

    async def _start_multipart(self, bucket: BucketKind, key: str) -> str:
        try:
            reply = await self._api().create_multipart_upload(Bucket=self.buckets[bucket], Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"cannot start a multipart upload of {key!r}: {exc}") from exc
        return reply["UploadId"]

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
        params = {
            "Bucket": self.buckets[bucket],
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": number,
            "ContentLength": size,
        }
        return await self._presign("upload_part", params, expires)

    async def complete_multipart(
        self, bucket: BucketKind, key: str, upload_id: str, parts: Sequence[CompletedPart]
    ) -> int:
        check_key(key)
        listing = [{"PartNumber": part.number, "ETag": part.etag} for part in parts]
        try:
            await self._api().complete_multipart_upload(
                Bucket=self.buckets[bucket],
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listing},
            )
        except ClientError as exc:
            if _code(exc) in _INCOMPLETE:
                raise UploadIncomplete(f"upload of {key!r} cannot complete: {exc}") from exc
            raise StorageError(f"cannot complete the upload of {key!r}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 is unreachable: {exc}") from exc
        size = await self.head(bucket, key)
        if size is None:
            raise StorageError(f"{key!r} is missing right after its upload completed")
        return size

    async def abort_multipart(self, bucket: BucketKind, key: str, upload_id: str) -> None:
        try:
            await self._api().abort_multipart_upload(
                Bucket=self.buckets[bucket], Key=key, UploadId=upload_id
            )
        except ClientError as exc:
            if _code(exc) not in ("NoSuchUpload", "404"):
                raise StorageError(f"cannot abort the upload of {key!r}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 is unreachable: {exc}") from exc

    async def _presign_get(self, bucket: BucketKind, key: str, expires: int, filename: str) -> str:
        params = {
            "Bucket": self.buckets[bucket],
            "Key": key,
            "ResponseContentDisposition": content_disposition(filename),
        }
        return await self._presign("get_object", params, expires)

    async def head(self, bucket: BucketKind, key: str) -> int | None:
        check_key(key)
        try:
            reply = await self._api().head_object(Bucket=self.buckets[bucket], Key=key)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(f"cannot stat {key!r}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 is unreachable: {exc}") from exc
        return int(reply["ContentLength"])

    async def delete(self, bucket: BucketKind, keys: Iterable[str]) -> None:
        keys = [check_key(key) for key in keys]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start : start + _DELETE_BATCH]]
            try:
                reply = await self._api().delete_objects(
                    Bucket=self.buckets[bucket], Delete={"Objects": batch, "Quiet": True}
                )
            except (ClientError, BotoCoreError) as exc:
                raise StorageError(f"cannot delete objects: {exc}") from exc
            if reply.get("Errors"):
                first = reply["Errors"][0]
                raise StorageError(
                    f"cannot delete {len(reply['Errors'])} objects, first {first.get('Key')!r}: "
                    f"{first.get('Code')}: {first.get('Message')}"
                )
