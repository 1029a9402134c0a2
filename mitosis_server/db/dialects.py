"""Everything that differs between PostgreSQL and SQLite, in one place.

* URLs as users type them (``postgres://``, ``postgresql://``, ``sqlite:///path``) become
  SQLAlchemy async URLs (asyncpg, aiosqlite).
* SQLite gets WAL, foreign keys and a busy timeout on every connection, and ``BEGIN
  IMMEDIATE`` for every transaction: SQLite has one writer, so taking the write lock up front
  turns "database is locked" surprises mid-transaction into an orderly queue. Sessions that
  only look (``READ_ONLY``) begin deferred instead: in WAL mode readers need no lock.
* Start-up work that two coordinators must not do at once (migrations, the first admin) runs
  under a PostgreSQL advisory lock; SQLite's IMMEDIATE transaction already serialises it.
* Claiming tasks locks rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (``claim_candidates``);
  timestamp arithmetic inside statements (``seconds_after``, ``milliseconds_between``) and
  finding text in text (``position_of``) are spelled per dialect.
* Submitting (``numbering``, ``bulk_insert``): PostgreSQL reserves per-group task numbers in
  their own short transaction, so the group row is locked for one statement rather than until
  the submission commits, and inserts many rows as one ``INSERT … SELECT FROM unnest(…)``;
  SQLite numbers inside the submitting transaction (it has one writer anyway) and inserts
  multi-row ``VALUES``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    CTE,
    JSON,
    BigInteger,
    Integer,
    Select,
    Table,
    Update,
    bindparam,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from mitosis_server.db import driver
from mitosis_server.db.models import Group

_STARTUP_LOCK_ID = 0x6D69746F  # "mito"
# Connection execution options of a session that never writes (engine.reading).
_READS_ONLY = "mitosis_read_only"
READ_ONLY = {_READS_ONLY: True}


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
    """Pool settings. No ``pool_pre_ping`` on PostgreSQL: it is a round trip on every
    checkout, i.e. on every request. A connection broken by a database restart fails its
    statement once instead; SQLAlchemy then discards the whole pool, and the caller (a
    worker, the TUI) retries. ``pool_recycle`` replaces connections before server-side idle
    timeouts close them."""
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 30}}
    return {"pool_size": 10, "max_overflow": 20, "pool_recycle": 1800}


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
        reads_only = connection.get_execution_options().get(_READS_ONLY, False)
        connection.exec_driver_sql("BEGIN" if reads_only else "BEGIN IMMEDIATE")


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


class milliseconds_between(FunctionElement):
    """``milliseconds_between(start, end)``: whole milliseconds from ``start`` to ``end``
    (NULL when either is), an integer so that equal durations compare equal exactly."""

    type = BigInteger()
    inherit_cache = True

    def __init__(self, start, end) -> None:
        super().__init__(start, end)


@compiles(milliseconds_between, "postgresql")
def _milliseconds_between_postgresql(element, compiler, **kw) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(EXTRACT(EPOCH FROM ({end} - {start})) * 1000 AS BIGINT)"


@compiles(milliseconds_between, "sqlite")
def _milliseconds_between_sqlite(element, compiler, **kw) -> str:
    # julianday() reads the stored text to the millisecond.
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(ROUND((julianday({end}) - julianday({start})) * 86400000) AS INTEGER)"


# --- submitting ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def numbering(db: AsyncSession) -> AsyncIterator[AsyncSession | AsyncConnection]:
    """Where a submission checks its groups and reserves its task numbers.

    PostgreSQL, when ``db`` has not begun a transaction yet (a submit request): an autocommit
    connection, so each reservation commits at once and the group row's lock lasts one
    statement; concurrent submissions to one group then queue for microseconds instead of for
    each other's whole transaction. The connection is returned before ``db`` takes its own, so
    a request never holds two (no pool exhaustion deadlock). A submission that fails after its
    reservation leaves a gap in its group's numbers, as a sequence would.

    SQLite, or a caller already inside a transaction (downstream tasks, re-runs): ``db``
    itself, so the numbers are taken in that transaction (gap-free; the row stays locked to
    its commit — on SQLite the one writer is serialised anyway).
    """
    if is_sqlite(db.bind) or db.in_transaction():
        yield db
        return
    async with db.bind.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")


@functools.cache
def _reserve_statement(no_flush_wait: bool) -> Update:
    statement = (
        update(Group)
        .execution_options(synchronize_session=False)
        .where(Group.id == bindparam("group_id"))
        .values(task_seq=Group.task_seq + bindparam("count", type_=BigInteger))
        .returning(Group.task_seq)
    )
    return without_flush_wait(statement) if no_flush_wait else statement


def without_flush_wait(statement: Update) -> Update:
    """``statement`` run alone (autocommit) then commits without waiting for the WAL flush:
    SET LOCAL inside its own implicit transaction, as a one-time filter evaluated first."""
    setting = select(func.set_config("synchronous_commit", "off", True)).scalar_subquery()
    return statement.where(setting.is_not(None))


async def reserve_numbers(
    executor: AsyncSession | AsyncConnection, group_id: int, count: int
) -> int:
    """Reserve ``count`` task numbers of a group through ``numbering``'s executor; returns the
    first. The statement is a row lock of one statement's length on PostgreSQL.

    On ``numbering``'s own autocommit connection the reservation commits without waiting for
    its WAL flush: the submission that uses the numbers commits later *with* a flush, which
    makes the earlier reservation durable too, and a crash before that loses only numbers no
    task holds. Inside a caller's transaction it never does (that commit must be durable).
    """
    no_flush_wait = isinstance(executor, AsyncConnection) and not is_sqlite(executor)
    last = await executor.scalar(
        _reserve_statement(no_flush_wait), {"group_id": group_id, "count": count}
    )
    return last - count + 1


def _rendered_type(column, dialect: Dialect) -> str:
    return column.type.compile(dialect=dialect)


@functools.cache
def _unnest_insert(table: Table, columns: tuple[str, ...], returning: tuple[str, ...], dialect):
    """``INSERT INTO t (…) SELECT … FROM unnest($1::T[], …) WITH ORDINALITY ORDER BY ord``:
    one statement and one array parameter per column, whatever the number of rows; rows get
    their ids in the given order. JSON travels as text and is cast per element."""
    arrays, selected = [], []
    for position, name in enumerate(columns, start=1):
        column = table.c[name]
        is_json = isinstance(column.type, JSON)
        arrays.append(f"${position}::{'TEXT' if is_json else _rendered_type(column, dialect)}[]")
        selected.append(f"r.{name}::JSON" if is_json else f"r.{name}")
    # Only table and column names from the models are spliced in; every value is a parameter.
    names, values = ", ".join(columns), ", ".join(selected)
    source = f"unnest({', '.join(arrays)}) WITH ORDINALITY AS r({names}, ord)"
    sql = f"INSERT INTO {table.name} ({names}) SELECT {values} FROM {source} ORDER BY r.ord"  # noqa: S608
    return sql + (f" RETURNING {', '.join(returning)}" if returning else "")


SQLITE_MAX_VARIABLES = 32766  # SQLite >= 3.32


@functools.cache
def _values_insert(table: Table, columns: tuple[str, ...], returning: tuple[str, ...], rows: int):
    row = "(" + ", ".join("?" * len(columns)) + ")"
    names = ", ".join(columns)  # from the models only; every value is a parameter
    sql = f"INSERT INTO {table.name} ({names}) VALUES " + ", ".join([row] * rows)  # noqa: S608
    return sql + (f" RETURNING {', '.join(returning)}" if returning else "")


@functools.cache
def _processors(table: Table, columns: tuple[str, ...], dialect) -> tuple:
    """Each column's bind processor (None: as is). JSON columns take text already encoded."""
    found = []
    for name in columns:
        column_type = table.c[name].type
        found.append(None if isinstance(column_type, JSON) else column_type.bind_processor(dialect))
    return tuple(found)


async def bulk_insert(
    db: AsyncSession,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    returning: Sequence[str] = (),
) -> list[tuple]:
    """Insert ``rows`` (values in ``columns`` order; JSON columns as encoded text) in a few
    statements, in order; returns the ``returning`` columns of every row (any order).

    The statements are built once per shape and sent to the driver as they are: the per-row
    work is the column types' own bind processors, nothing else, which is what makes a batch
    of 10,000 tasks cost tens of milliseconds rather than seconds.
    """
    if not rows:
        return []
    columns, returning = tuple(columns), tuple(returning)
    connection = await db.connection()
    dialect = connection.dialect
    processors = _processors(table, columns, dialect)
    results = [(table.c[name].type.result_processor(dialect, None) or _same) for name in returning]
    found: list[tuple] = []
    if is_sqlite(connection):
        per_statement = SQLITE_MAX_VARIABLES // len(columns)
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            flat = [
                value if process is None or value is None else process(value)
                for row in chunk
                for value, process in zip(row, processors, strict=True)
            ]
            sql = _values_insert(table, columns, returning, len(chunk))
            result = await connection.exec_driver_sql(sql, tuple(flat))
            found += result.all() if returning else []
    else:
        arrays = tuple(
            [row[i] if process is None or row[i] is None else process(row[i]) for row in rows]
            for i, process in enumerate(processors)
        )
        sql = _unnest_insert(table, columns, returning, dialect)
        found = await (await driver.in_transaction(db)).fetch(sql, *arrays)
    if not returning:
        return []
    return [tuple(p(v) for p, v in zip(results, row, strict=True)) for row in found]


def _same(value: Any) -> Any:
    return value
