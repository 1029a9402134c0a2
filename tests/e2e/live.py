"""Two real coordinators on one PostgreSQL and one Redis, and helpers, for the live-stream
end-to-end tests (issue 7).

Two ``mitosis-server`` processes share a fresh database, a Redis key prefix of their own and
one signing key pair, so a token issued by A works on B. Workers are SDK clients holding a
worker token (no processes run) unless a test starts a real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from mitosis_sdk.client import AsyncClient
from mitosis_server.events.log_user import log_user_name
from tests.conftest import _pg_execute, free_port
from tests.e2e.processes import Server, stop_process

REDIS = "redis://127.0.0.1:6379/0"
LOG_HISTORY = 120_000


@contextlib.contextmanager
def coordinator_pair(tmp: Path, redis_url: str, *extra: str) -> Iterator[list[Server]]:
    """Coordinators A and B over one fresh PostgreSQL database, ``redis_url`` and one key
    pair; stopped and the database dropped afterwards."""
    database = f"mito_e2e_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{database}"'))
    shared = (
        *("--db", f"postgres://postgres@127.0.0.1:5432/{database}", "--redis", redis_url),
        *("--jwt-private-key", str(tmp / "keys" / "jwt.pem")),
        *("--jwt-public-key", str(tmp / "keys" / "jwt.pub.pem"), *extra),
    )
    servers = [
        Server(tmp / f"data-{name}", free_port(), tmp / f"{name}.log", *shared) for name in "ab"
    ]
    try:
        for server in servers:  # A first: it migrates and writes the key pair B reuses
            server.start()
        yield servers
    finally:
        for server in servers:
            if server.process is not None:
                stop_process(server.process, signal.SIGTERM)
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


@contextlib.contextmanager
def prefixed_pair(tmp: Path, *extra: str) -> Iterator[tuple[Server, Server, str]]:
    """(A, B, prefix): two coordinators on the machine's Redis, under a prefix of their own
    (keys and the log user deleted afterwards)."""
    prefix = f"mito-test-{uuid.uuid4().hex[:8]}"
    try:
        with coordinator_pair(tmp, REDIS, "--redis-prefix", prefix, *extra) as (a, b):
            yield a, b, prefix
    finally:
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.execute_command("ACL", "DELUSER", log_user_name(prefix))
        client.close()


@pytest.fixture(scope="module", name="pair")
def pair_fixture(tmp_path_factory):
    """A prefixed pair keeping ``LOG_HISTORY`` live lines per task: more than any test of
    it writes, so a follower racing a fast real worker never loses a line to trimming."""
    history = ("--log-history", str(LOG_HISTORY))
    with prefixed_pair(tmp_path_factory.mktemp("pair"), *history) as servers:
        yield servers


async def user(server: Server, name: str | None = None) -> AsyncClient:
    """A new user (with a personal group of the same name), logged in on ``server``."""
    name = name or f"u{uuid.uuid4().hex[:10]}"
    async with AsyncClient(server.url) as admin:
        await admin.login("mitosis_admin", "mitosis_admin")
        await admin.create_user(name, "pw-pw-pw-pw")
    client = AsyncClient(server.url)
    await client.login(name, "pw-pw-pw-pw")
    client.name = name
    return client


async def worker_of(owner: AsyncClient, server: Server) -> tuple[str, AsyncClient]:
    """A worker registered by ``owner`` (granted its personal group), talking to ``server``."""
    registered = await owner.register_worker(version="test")
    return str(registered.worker.uuid), AsyncClient(server.url, registered.token)


def on(client: AsyncClient, server: Server) -> AsyncClient:
    """The same session, talking to another coordinator."""
    other = AsyncClient(server.url, client.token)
    other.name = getattr(client, "name", None)
    return other


def collect(stream) -> tuple[list, asyncio.Task]:
    """Items of ``stream`` appended to a list by a background task (cancel it when done)."""
    seen: list = []

    async def run() -> None:
        async for item in stream:
            seen.append(item)

    return seen, asyncio.create_task(run())


async def wait_for_event(seen: list, task, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not any(e.object_id == str(task) for e in seen):
            await asyncio.sleep(0.05)


async def ends_with(stream, error: type[Exception], timeout: float = 10.0) -> None:
    """Drain ``stream`` until it raises ``error`` (bounded)."""

    async def drain() -> None:
        async for _ in stream:
            pass

    with pytest.raises(error):
        await asyncio.wait_for(drain(), timeout)


async def admin_on(server: Server) -> AsyncClient:
    admin = AsyncClient(server.url)
    await admin.login("mitosis_admin", "mitosis_admin")
    return admin
