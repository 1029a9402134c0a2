"""Everything that differs between PostgreSQL and SQLite, in one place.

* URLs as users type them (``postgres://``, ``postgresql://``, ``sqlite:///path``) become
  SQLAlchemy async URLs (asyncpg, aiosqlite).
* SQLite gets WAL, foreign keys and a busy timeout on every connection, and ``BEGIN
  IMMEDIATE`` for every transaction: SQLite has one writer, so taking the write lock up front
  turns "database is locked" surprises mid-transaction into an orderly queue.
* Start-up work that two coordinators must not do at once (migrations, the first admin) runs
  under a PostgreSQL advisory lock; SQLite's IMMEDIATE transaction already serialises it.
* Claiming tasks locks rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (``claim_candidates``);
  timestamp arithmetic inside statements (``seconds_after``) and finding text in text
  (``position_of``) are spelled per dialect.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import CTE, Integer, Select, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

_STARTUP_LOCK_ID = 0x6D69746F  # "mito"


def normalise_url(url: str) -> URL:
    """The SQLAlchemy URL for a user-typed database URL; ValueError for anything else."""
    lowered = url.lower()
    if lowered.startswith(("postgres://", "postgresql://", "postgresql+asyncpg://")):
        rest = url.split("://", 1)[1]
        return make_url(f"postgresql+asyncpg://{rest}")
    if lowered.startswith(("sqlite://", "sqlite+aiosqlite://")):
        rest = url.split("://", 1)[1]
        if rest in ("", "/"):
            raise ValueError("sqlite URL needs a file path, e.g. sqlite:///var/lib/mitosis.db")
        return make_url(f"sqlite+aiosqlite://{rest}")
    raise ValueError(
        f"unsupported database URL {url!r}: use postgres://USER@HOST/DB or sqlite:///PATH"
    )


def is_sqlite(engine: AsyncEngine | AsyncConnection) -> bool:
    return engine.dialect.name == "sqlite"


def engine_options(url: URL) -> dict:
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 30}}
    return {"pool_size": 10, "max_overflow": 20, "pool_pre_ping": True}


def prepare_engine(engine: AsyncEngine) -> None:
    """Per-connection set-up; for SQLite also the data directory."""
    if not is_sqlite(engine):
        return
    database = engine.url.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextlib.asynccontextmanager
async def startup_lock(connection: AsyncConnection) -> AsyncIterator[None]:
    """Serialise start-up work across coordinators sharing one database."""
    if is_sqlite(connection):
        yield
        return
    await connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _STARTUP_LOCK_ID})
    try:
        yield
    finally:
        await connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _STARTUP_LOCK_ID})


def skip_locked(statement: Select, *tables) -> Select:
    """Lock the selected rows, passing over rows another transaction holds.

    PostgreSQL: ``FOR UPDATE OF … SKIP LOCKED``, so concurrent claimers never wait on each
    other and never take the same row. SQLite: SQLAlchemy renders no locking clause there,
    and none is needed: every transaction starts with ``BEGIN IMMEDIATE`` (one writer).
    """
    return statement.with_for_update(skip_locked=True, of=tables or None)


def claim_candidates(statement: Select, *tables, name: str = "claim") -> CTE:
    """The rows a claim takes (``skip_locked``), selected once, as a CTE to UPDATE … FROM.

    ``MATERIALIZED`` makes the selection run exactly once: PostgreSQL may re-run an
    ``IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`` subquery and so take more than ``n``
    rows (SQLite accepts the keyword too).
    """
    return skip_locked(statement, *tables).cte(name).prefix_with("MATERIALIZED")


class seconds_after(FunctionElement):
    """``seconds_after(moment, seconds)``: a timestamp ``seconds`` (a column) after ``moment``,
    computed in SQL so a set-based UPDATE can set per-row deadlines."""

    inherit_cache = True

    def __init__(self, moment, seconds) -> None:
        super().__init__(moment, seconds)


@compiles(seconds_after, "postgresql")
def _seconds_after_postgresql(element, compiler, **kw) -> str:
    moment, seconds = (compiler.process(c, **kw) for c in element.clauses)
    return f"({moment} + make_interval(secs => {seconds}))"


@compiles(seconds_after, "sqlite")
def _seconds_after_sqlite(element, compiler, **kw) -> str:
    # Timestamps are stored as naive UTC text; strftime keeps that format (to milliseconds).
    moment, seconds = (compiler.process(c, **kw) for c in element.clauses)
    return f"strftime('%Y-%m-%d %H:%M:%f', {moment}, '+' || ({seconds}) || ' seconds')"


class position_of(FunctionElement):
    """``position_of(text, needle)``: the 1-based position of ``needle`` in ``text``, 0 when
    absent (characters, not bytes, on both databases)."""

    type = Integer()
    inherit_cache = True

    def __init__(self, haystack, needle) -> None:
        super().__init__(haystack, needle)


@compiles(position_of, "postgresql")
def _position_of_postgresql(element, compiler, **kw) -> str:
    haystack, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"strpos({haystack}, {needle})"


@compiles(position_of, "sqlite")
def _position_of_sqlite(element, compiler, **kw) -> str:
    haystack, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"instr({haystack}, {needle})"
