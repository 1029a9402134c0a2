"""Fixtures shared by the integration tests: a real S3 endpoint (see ``s3gate``), and the
coordinator's settings for the object store a test asks for.

``object_backend`` is ``local`` unless a test (or a folder's conftest, like ``files/``)
parametrises it with ``s3``. The coordinator's public URL is the SDK clients' base URL, so
the local store's signed URLs reach the in-process app through the clients' transport, exactly
as API calls do; S3 URLs go over loopback to moto. The part size is S3's minimum and the
multipart threshold just above one part, so a 5 MiB + 1 byte file takes the multipart path.
"""

from __future__ import annotations

import uuid

import pytest

from mitosis_server.config import CoordinatorSettings
from mitosis_server.storage.base import MIN_PART_SIZE
from tests.integration.s3gate import ACCESS_KEY, SECRET_KEY, Clock, start_moto

URL = "http://mitosis.test"
PART = MIN_PART_SIZE


@pytest.fixture(scope="session")
def s3_clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def moto_url(s3_clock) -> str:
    """A moto S3 server that checks presigned URLs as S3 does, for this test process."""
    server, url = start_moto(s3_clock)
    yield url
    server.stop()


@pytest.fixture
def object_backend() -> str:
    """``local``, unless parametrised (``@pytest.mark.parametrize("object_backend", ["local",
    "s3"])``)."""
    return "local"


@pytest.fixture
def settings(request, db_url, tmp_path, object_backend) -> CoordinatorSettings:
    options = {
        "data_dir": str(tmp_path / "data"),
        "db": db_url,
        "password_hash_memory": 1024 * 1024,
        "public_url": URL,
        "multipart_part_size": PART,
        "multipart_threshold": PART + 1,
    }
    if object_backend == "s3":
        tag = uuid.uuid4().hex[:12]
        options |= {
            "s3_url": request.getfixturevalue("moto_url"),
            "s3_access_key": ACCESS_KEY,
            "s3_secret_key": SECRET_KEY,
            "s3_bucket_artifacts": f"art-{tag}",
            "s3_bucket_attachments": f"att-{tag}",
        }
    return CoordinatorSettings(**options)
