"""PostgreSQL's hottest statements, run on the asyncpg connection itself.

SQLAlchemy's execution layer — the compiled-cache lookup, parameter processing, the async
adapter's cursor and its greenlet hops, result processing, and the ORM session around it —
costs the coordinator 0.2–0.4 ms of CPU per statement; asyncpg itself spends a tenth of that.
For the few statements a request runs every time (a single submit, a worker's fetch with its
reports), that layer was most of the request. The statements stay SQLAlchemy Core, built from
the models and compiled once per dialect; only their execution skips the layer, so they
cannot drift from the schema.

Two ways in: ``autocommit`` lends a pooled connection outside any transaction (each
statement commits alone), and ``rows`` runs a statement inside a session's transaction on
the session's own connection, so it mixes freely with ORM work before and after it and
commits or rolls back with it. SQLite goes through SQLAlchemy as before: its cost is the
engine and aiosqlite's thread hops, which this would not remove.
"""

from __future__ import annotations

import collections
import contextlib
import functools
from collections.abc import AsyncIterator, Mapping
from typing import Any, NamedTuple

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.sql import ClauseElement


class Compiled(NamedTuple):
    """A statement as asyncpg takes it: SQL with ``$n`` placeholders, the name each
    placeholder binds, and the values the statement itself carries (literal ``IN`` lists)."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, Any]

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] if name in params else self.fixed[name] for name in self.names]


@functools.lru_cache(maxsize=512)
def compiled(statement: ClauseElement, dialect: Dialect) -> Compiled:
    """A prebuilt statement (from a cached factory: the same object every time) compiled
    for ``dialect``, once.

    Literal ``IN`` lists become plain placeholders (asyncpg has no expanding parameters);
    expanding them needs a value for every parameter, so those given at run time get a
    stand-in here."""
    result = statement.compile(dialect=dialect)
    stand_ins = {
        name: None for name, b in result.binds.items() if b.value is None and b.callable is None
    }
    expanded = result.construct_expanded_state(stand_ins, escape_names=False)
    return Compiled(expanded.statement, tuple(expanded.positiontup or ()), expanded.parameters)


@functools.cache
def _row_type(names: tuple[str, ...]) -> type:
    """Rows with attribute access by column name, like SQLAlchemy's (duplicates renamed)."""
    return collections.namedtuple("Row", names, rename=True)


def uses_driver(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


class Driver(NamedTuple):
    """An asyncpg connection and the dialect its statements are compiled for."""

    connection: Any
    dialect: Dialect

    async def rows(self, statement: ClauseElement, params: Mapping[str, Any]) -> list:
        """Every row of ``statement`` run with ``params``, with attribute access."""
        ready = compiled(statement, self.dialect)
        records = await self.connection.fetch(ready.sql, *ready.arguments(params))
        if not records:
            return []
        make = _row_type(tuple(records[0].keys()))._make
        return [make(record) for record in records]

    async def fetchrow(self, statement: ClauseElement, **params: Any) -> Any:
        """The first row of ``statement`` run with ``params``, or None."""
        found = await self.rows(statement, params)
        return found[0] if found else None

    async def fetch(self, sql: str, *arguments: Any) -> list:
        """SQL already in asyncpg's form (``dialects.bulk_insert``'s statements)."""
        return await self.connection.fetch(sql, *arguments)


@contextlib.asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[Driver]:
    """A pooled connection's asyncpg connection, outside any transaction: each statement
    commits on its own (one round trip, one commit), and the pool gets the connection back
    as it was lent — no transaction was begun through SQLAlchemy, so none is left open."""
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        yield Driver(raw.driver_connection, engine.dialect)


async def in_transaction(db: AsyncSession) -> Driver | None:
    """The asyncpg connection of ``db``'s transaction (begun now if it was not yet), or None
    on SQLite."""
    driver = _remembered(db)
    if driver is None:
        driver = await _driver_of(await db.connection())
        _remember(db, driver)
    return driver


async def _driver_of(connection: AsyncConnection) -> Driver | None:
    """SQLAlchemy's asyncpg adapter sends ``BEGIN`` lazily, before its own first statement;
    a statement sent past it must begin the transaction the same way, or it would run (and
    commit) on its own. ``tests/unit/test_driver.py`` holds this to the adapter's behaviour:
    a driver statement commits and rolls back with the session."""
    if connection.dialect.name != "postgresql":
        return None
    raw = await connection.get_raw_connection()
    adapter = raw.dbapi_connection
    if adapter._transaction is None:
        await adapter._start_transaction()
    return Driver(raw.driver_connection, connection.dialect)


# Where a session keeps the driver of its current transaction. Finding it through the
# AsyncSession (its proxies, a greenlet hop each for the connection and the raw connection)
# cost more than most of the statements run on it: it is looked up once per transaction.
_REMEMBERED = "mitosis.driver"


def _remembered(db: AsyncSession) -> Driver | None:
    remembered = db.info.get(_REMEMBERED)
    if remembered is None:
        return None
    transaction, driver = remembered
    current = db.sync_session.get_transaction()
    return driver if current is transaction and current.is_active else None


def _remember(db: AsyncSession, driver: Driver | None) -> None:
    if driver is not None:
        db.info[_REMEMBERED] = (db.sync_session.get_transaction(), driver)


async def rows(db: AsyncSession, statement: ClauseElement, params: Mapping[str, Any]) -> list:
    """Every row of a prebuilt ``statement`` with ``params`` in ``db``'s transaction: on the
    driver on PostgreSQL, through SQLAlchemy elsewhere. Either way rows have attribute
    access."""
    driver = _remembered(db)
    if driver is None:
        connection = await db.connection()
        driver = await _driver_of(connection)
        if driver is None:
            return list(await connection.execute(statement, params))
        _remember(db, driver)
    return await driver.rows(statement, params)
