"""The one async engine and session factory of a coordinator process, and the unit of work."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from mitosis_server.db.dialects import engine_options, normalise_url, prepare_engine


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
