"""Database units of work under cancellation, on SQLite and PostgreSQL.

A look at the database that is cancelled halfway (a log stream closing while it checks its
task's state) must not leave a lock behind: on SQLite the interrupted connection lingers
until garbage collection, so a reader must never have held the one write lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest
from sqlalchemy import select, text

from mitosis_server.db.engine import create_engine, reading, session_factory, transaction
from mitosis_server.db.models import User

# About 20 ms of work in one statement, so a cancellation lands while it runs.
SLOW_READ = text(
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) "
    "SELECT count(*) FROM n"
)


@pytest.fixture
async def sessions(db_url):
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


async def test_readers_cancelled_midway_leave_writers_free(sessions):
    async def look() -> None:
        async with reading(sessions) as db:
            await db.execute(SLOW_READ)
            await db.execute(SLOW_READ)

    rng = random.Random(7)
    for _ in range(20):
        looking = asyncio.create_task(look())
        await asyncio.sleep(rng.uniform(0.0, 0.03))
        looking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await looking
    async with asyncio.timeout(5):  # a held write lock would make this wait 30 s
        async with transaction(sessions) as db:
            await db.execute(
                text("UPDATE users SET token_version = token_version + 1 WHERE id = -1")
            )


async def test_a_reader_sees_committed_writes_and_cannot_block_one(sessions):
    async with reading(sessions) as db:
        before = await db.scalar(select(User.id).where(User.name == "nobody"))
        async with asyncio.timeout(5), transaction(sessions) as writer:
            await writer.execute(
                text("UPDATE users SET token_version = token_version + 1 WHERE id = -1")
            )
    assert before is None
