"""Which object store a coordinator uses, from its settings: S3 when ``s3_url`` is set, else
the local directory under ``DATA_DIR/objects`` whose URLs the coordinator serves itself.

Unless configured, the multipart threshold is 256 MiB on S3 (parts go up in parallel and are
retried one by one) and 5 GiB on the local store, whose parts would be written to disk twice
(received, then joined): one streamed PUT writes each byte once.

The S3 backend is imported only when it is used: aioboto3 costs the embedded coordinator
half a second of start-up and some 15 MiB of memory for nothing."""

from __future__ import annotations

from mitosis_server.config import CoordinatorSettings
from mitosis_server.storage.base import MAX_SINGLE_PUT, BucketKind, ObjectStore
from mitosis_server.storage.local import LocalStore, load_secret

__all__ = ["build_store"]


def build_store(settings: CoordinatorSettings) -> ObjectStore:
    """A new, unopened store (``async with store`` or ``open()`` before use)."""

    def sizes(default_threshold: int) -> dict[str, int]:
        return {
            "multipart_threshold": settings.multipart_threshold or default_threshold,
            "part_size": settings.multipart_part_size,
        }

    if settings.s3_url:
        from mitosis_server.storage.s3 import S3Store

        return S3Store(
            endpoint_url=settings.s3_url,
            region=settings.s3_region,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            buckets={
                BucketKind.ARTIFACTS: settings.s3_bucket_artifacts,
                BucketKind.ATTACHMENTS: settings.s3_bucket_attachments,
            },
            path_style=settings.s3_path_style,
            public_url=settings.s3_public_url,
            **sizes(256 * 2**20),
        )
    return LocalStore(
        settings.objects_dir,
        settings.coordinator_url,
        load_secret(settings.objects_key_path),
        **sizes(MAX_SINGLE_PUT),
    )
