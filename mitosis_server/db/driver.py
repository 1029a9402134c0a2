"""PostgreSQL's hottest statements, run on the asyncpg connection itself.

SQLAlchemy's execution layer — the compiled-cache lookup, parameter processing, the async
adapter's cursor and its greenlet hops, result processing, and the ORM session around it —
costs the coordinator 0.2–0.4 ms of CPU per statement; asyncpg itself spends a tenth of that.
For the few statements a request runs every time (a single submit), that layer was most of
the request. The statements stay SQLAlchemy Core, built from the models and compiled once
per dialect; only their execution skips the layer, so they cannot drift from the schema.

Used where it pays and only on PostgreSQL: SQLite's cost is the engine and aiosqlite's
thread hops, which this would not remove.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, NamedTuple

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement


class Compiled(NamedTuple):
    """A statement as asyncpg takes it: SQL with ``$n`` placeholders, the name each
    placeholder binds, and the values the statement itself carries (literal ``IN`` lists)."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, Any]

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] if name in params else self.fixed[name] for name in self.names]


@functools.cache
def compiled(build: Callable[[], ClauseElement], dialect: Dialect) -> Compiled:
    """``build()`` (a cached statement factory) compiled for ``dialect``, once.

    Literal ``IN`` lists become plain placeholders (asyncpg has no expanding parameters);
    expanding them needs a value for every parameter, so those given at run time get a
    stand-in here."""
    result = build().compile(dialect=dialect)
    stand_ins = {
        name: None for name, b in result.binds.items() if b.value is None and b.callable is None
    }
    expanded = result.construct_expanded_state(stand_ins, escape_names=False)
    return Compiled(expanded.statement, tuple(expanded.positiontup or ()), expanded.parameters)


def uses_driver(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


class Driver(NamedTuple):
    """An asyncpg connection and the dialect its statements are compiled for."""

    connection: Any
    dialect: Dialect

    async def fetchrow(self, build: Callable[[], ClauseElement], **params: Any) -> Any:
        """The first row (an asyncpg ``Record``) of ``build()`` run with ``params``, or None."""
        statement = compiled(build, self.dialect)
        return await self.connection.fetchrow(statement.sql, *statement.arguments(params))

    async def execute(self, sql: str, *arguments: Any) -> None:
        """SQL already in asyncpg's form (``dialects.bulk_insert``'s statements)."""
        await self.connection.execute(sql, *arguments)


@contextlib.asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[Driver]:
    """A pooled connection's asyncpg connection, outside any transaction: each statement
    commits on its own (one round trip, one commit), and the pool gets the connection back
    as it was lent — no transaction was begun through SQLAlchemy, so none is left open."""
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        yield Driver(raw.driver_connection, engine.dialect)
