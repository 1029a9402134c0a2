"""Shared fixtures: a fresh database per test on SQLite *and* PostgreSQL, the real app.

PostgreSQL databases are cloned from a template migrated once per test process, so a fresh
database costs one ``CREATE DATABASE … TEMPLATE``; SQLite files are copied the same way.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from mitosis_sdk.client import AsyncClient
from mitosis_server.app import create_app
from mitosis_server.config import CoordinatorSettings
from mitosis_server.db.engine import create_engine
from mitosis_server.db.migrate import upgrade
from tests.served import ServedTransport

PG_ADMIN_DSN = os.environ.get("MITO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN = ("mitosis_admin", "mitosis_admin")
BACKENDS = ["sqlite", "postgresql"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_url(database: str) -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"


async def _pg_execute(*statements: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def pg_template() -> str:
    """A migrated PostgreSQL database to clone, private to this test process."""
    name = f"mito_tpl_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
    asyncio.run(_migrate(_pg_url(name)))
    yield name
    asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    asyncio.run(_migrate(f"sqlite:///{path}"))
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    """A fresh, migrated database; every test using it runs once per backend."""
    if request.param == "sqlite":
        path = tmp_path / "mitosis.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"mito_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield f"postgres://postgres@127.0.0.1:5432/{name}"
    asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(db_url, tmp_path) -> CoordinatorSettings:
    # A cheap password hash: the suite logs in thousands of times; production keeps 64 MiB.
    # The app is addressed as http://mitosis.test in-process; its signed URLs say so too.
    return CoordinatorSettings(
        data_dir=str(tmp_path / "data"),
        db=db_url,
        password_hash_memory=1024 * 1024,
        public_url="http://mitosis.test",
    )


@pytest.fixture
async def app(settings):
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
        yield application


@pytest.fixture
async def transport(app) -> AsyncIterator[httpx.AsyncBaseTransport]:
    """The app in-process (the raw app: asgi-lifespan's shared state would leak across calls),
    served like uvicorn serves it; requests still running finish before the app stops."""
    served = ServedTransport(app)
    yield served
    await served.finish()


ClientFactory = Callable[..., Awaitable[AsyncClient]]


@pytest.fixture
async def connect(transport) -> AsyncIterator[ClientFactory]:
    """``await connect("alice", "pw")``: an SDK client logged in (or anonymous with no user)."""
    clients: list[AsyncClient] = []

    async def _connect(username: str | None = None, password: str | None = None) -> AsyncClient:
        client = AsyncClient("http://mitosis.test", transport=transport)
        clients.append(client)
        if username is not None:
            await client.login(username, password or "")
        return client

    yield _connect
    for client in clients:
        await client.aclose()


@pytest.fixture
async def admin(connect) -> AsyncClient:
    return await connect(*ADMIN)


@pytest.fixture
async def make_user(admin, connect) -> Callable[..., Awaitable[AsyncClient]]:
    """``await make_user("alice")``: create a user and return a client logged in as them."""

    async def _make(name: str, password: str = "pw", *, is_admin: bool = False) -> AsyncClient:
        await admin.create_user(name, password, admin=is_admin)
        return await connect(name, password)

    return _make
