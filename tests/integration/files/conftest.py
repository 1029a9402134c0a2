"""The real app with a real object store: every test here runs on the local directory and on
S3 (moto behind the SigV4 gate); the coordinator settings for both are in
``tests/integration/conftest.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import Member, Role
from mitosis_server.storage.base import BucketKind
from tests.integration.s3gate import ACCESS_KEY, SECRET_KEY


@pytest.fixture(params=["local", "s3"])
def object_backend(request) -> str:
    """Every files test runs on the local store and on S3 (and, through ``db_url``, on SQLite
    and PostgreSQL)."""
    return request.param


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
