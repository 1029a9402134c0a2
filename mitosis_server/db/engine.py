"""The one async engine and session factory of a coordinator process."""

from __future__ import annotations

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
