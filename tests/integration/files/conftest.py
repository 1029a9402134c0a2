"""The real app with a real object store: the local directory by default, S3 (moto behind
the SigV4 gate) for tests parametrised with ``object_backend="s3"``.

The coordinator's public URL is the SDK clients' base URL, so the local store's signed URLs
reach the in-process app through the clients' transport, exactly as API calls do; S3 URLs go
over loopback to moto. The part size is S3's minimum and the multipart threshold just above
one part, so a 5 MiB + 1 byte file takes the multipart path.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import Member, Role
from mitosis_server.config import CoordinatorSettings
from mitosis_server.storage.base import MIN_PART_SIZE, BucketKind
from tests.integration.s3gate import ACCESS_KEY, SECRET_KEY

URL = "http://mitosis.test"
PART = MIN_PART_SIZE


@pytest.fixture
def object_backend() -> str:
    """``local`` unless a test parametrises it (``@pytest.mark.parametrize("object_backend",
    ["local", "s3"])``)."""
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


@pytest.fixture
def store(app):
    """The app's object store, to look behind the API."""
    return app.state.coordinator.store


@pytest.fixture
async def lab(admin, make_user) -> dict[str, AsyncClient]:
    """Group ``lab`` with a member per role (``owner`` is its admin), a non-member and the
    Mitosis admin (not a member either)."""
    owner = await make_user("owner")
    await owner.create_group("lab")
    clients = {"admin": admin, "group-admin": owner}
    for role in ("read", "write"):
        clients[role] = await make_user(f"member_{role}")
    clients["non-member"] = await make_user("outsider")
    await owner.update_members(
        "lab",
        [
            Member(username="member_read", role=Role.READ),
            Member(username="member_write", role=Role.WRITE),
        ],
    )
    return clients


FileFactory = Callable[..., Awaitable]


@pytest.fixture
def make_file(tmp_path):
    """``make_file("name", size)`` or ``make_file("name", data=b"…")``: a local file."""
    folder = tmp_path / "local"
    folder.mkdir()

    def _make(name: str, size: int | None = None, *, data: bytes | None = None):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if data is not None else uuid.uuid4().bytes * (size // 16 + 1))
        if data is None:
            with path.open("r+b") as file:
                file.truncate(size)
        return path

    return _make


@pytest.fixture
def behind(app, object_backend, request):
    """A look behind the API: open uploads, and the objects a bucket holds."""
    coordinator = app.state.coordinator

    class Behind:
        async def uploads(self) -> int:
            from sqlalchemy import func, select

            from mitosis_server.db.models import PendingUpload

            async with coordinator.sessions() as db:
                return await db.scalar(select(func.count()).select_from(PendingUpload))

        def objects(self, bucket: str = "attachments") -> int:
            store = coordinator.store
            if object_backend == "local":
                return sum(1 for path in (store.root / bucket).rglob("*") if path.is_file())
            import boto3

            client = boto3.client(
                "s3",
                endpoint_url=request.getfixturevalue("moto_url"),
                region_name="us-east-1",
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
            )
            name = store.buckets[BucketKind(bucket)]
            return client.list_objects_v2(Bucket=name).get("KeyCount", 0)

    return Behind()
