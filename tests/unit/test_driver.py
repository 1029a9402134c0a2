"""Statements past SQLAlchemy's execution layer (``db.driver``) keep the session's
transaction, on PostgreSQL (the driver) and SQLite (SQLAlchemy, the same call).

``driver.in_transaction`` relies on how SQLAlchemy's asyncpg adapter begins transactions;
these tests are what notices if a SQLAlchemy release changes that.
"""

from __future__ import annotations

import functools

import pytest
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import asyncpg

from mitosis_server.db import driver
from mitosis_server.db.engine import create_engine, reading, session_factory
from mitosis_server.db.models import User


@pytest.fixture
async def sessions(db_url):
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    async with sessions() as db:
        db.add(User(name="alice", password_hash="-", group_quota=1, token_version=0))
        await db.commit()
    yield sessions
    await engine.dispose()


@functools.cache
def _bump():
    """Every user's token version up by one; the new versions (a write with rows back)."""
    return (
        update(User)
        .where(User.name.in_(["alice", "nobody"]))
        .values(token_version=User.token_version + bindparam("by"))
        .returning(User.name, User.token_version)
    )


async def _versions(sessions) -> int:
    async with reading(sessions) as db:
        return await db.scalar(select(func.sum(User.token_version)))


async def test_a_statement_commits_with_its_session(sessions):
    before = await _versions(sessions)
    async with sessions() as db:
        rows = await driver.rows(db, _bump(), {"by": 2})
        await db.commit()
    assert [(r.name, r.token_version) for r in rows] == [("alice", before + 2)]
    assert await _versions(sessions) == before + 2


async def test_a_statement_rolls_back_with_its_session(sessions):
    before = await _versions(sessions)
    async with sessions() as db:
        await driver.rows(db, _bump(), {"by": 5})
        await db.rollback()
    assert await _versions(sessions) == before


async def test_session_work_before_and_after_shares_the_transaction(sessions):
    """An ORM write before and a read after see the statement's write, and the whole lot
    goes at once: nothing is visible to others until the commit."""
    before = await _versions(sessions)
    async with sessions() as db:
        alice = await db.scalar(select(User).where(User.name == "alice"))
        alice.token_version += 10
        await db.flush()
        (row,) = await driver.rows(db, _bump(), {"by": 1})
        assert row.token_version == before + 11
        assert await _versions(sessions) == before  # not committed yet
        assert await db.scalar(select(User.token_version).where(User.id == alice.id)) == (
            before + 11
        )
        await db.commit()
    assert await _versions(sessions) == before + 11


def test_literal_in_lists_become_plain_parameters():
    """asyncpg has no expanding parameters: the statement's own IN list is spelled out."""
    ready = driver.compiled(_bump(), asyncpg.dialect())
    assert "POSTCOMPILE" not in ready.sql
    assert ready.arguments({"by": 3}) == [3, "alice", "nobody"]


async def test_each_transaction_of_one_session_gets_its_own_connection_state(sessions):
    """The driver is remembered per transaction: after a commit the next statement begins
    the next transaction, which rolls back alone."""
    before = await _versions(sessions)
    async with sessions() as db:
        await driver.rows(db, _bump(), {"by": 1})
        await driver.rows(db, _bump(), {"by": 1})
        await db.commit()
        await driver.rows(db, _bump(), {"by": 10})
        await db.rollback()
        await driver.rows(db, _bump(), {"by": 100})
        await db.commit()
    assert await _versions(sessions) == before + 102
