"""The one async engine and session factory of a coordinator process, and the unit of work.

A unit of work must never be cancelled halfway: SQLAlchemy then invalidates the connection,
and on SQLite the interrupted statement keeps the closed connection (and the write lock it
holds) alive until garbage collection, so every other writer waits out its busy timeout.
The server never cancels a request (neither does uvicorn when a client leaves); background
tasks that can be cancelled shield their database work.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from mitosis_server.db.dialects import READ_ONLY, engine_options, normalise_url, prepare_engine


def create_engine(url: str) -> AsyncEngine:
    sa_url = normalise_url(url)
    engine = create_async_engine(sa_url, **engine_options(sa_url))
    prepare_engine(engine)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@contextlib.asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success, roll back on error; then run the callbacks that
    services queued in ``session.info["after_commit"]`` (publishing events, waking parked
    fetches), which must never see a change before it is visible."""
    async with sessions() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
    for callback in session.info.get("after_commit", ()):
        await callback()


@contextlib.asynccontextmanager
async def reading(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session that only looks. On SQLite it begins deferred, so a reader neither queues
    for nor holds the one write lock (a parked fetch's re-check, a stream's state check)."""
    async with sessions() as session:
        await session.connection(execution_options=READ_ONLY)
        yield session
