"""The matching rule S1 (``scheduling.may_take``) on SQLite and PostgreSQL, and the wake-ups
a parked fetch relies on (``services.wakeups``)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import insert, select

from mitosis_server.db.engine import create_engine, session_factory
from mitosis_server.db.models import (
    Group,
    Task,
    TaskTag,
    User,
    Worker,
    WorkerGrant,
    WorkerTag,
    utcnow,
)
from mitosis_server.services.scheduling import match_conditions, may_take
from mitosis_server.services.wakeups import CLOSING, Wakeups

# (worker tags, the task group's grant on the worker, task tags) → may the worker take it?
CASES = [
    ((), "write", (), True),
    ((), "admin", ("gpu", "cuda"), True),  # an untagged worker takes any tags
    ((), "read", (), False),  # read lets members see the worker, not run on it
    ((), None, (), False),  # no grant at all
    (("gpu",), "write", (), True),
    (("gpu",), "write", ("gpu",), True),
    (("gpu",), "write", ("gpu", "cuda"), False),  # one task tag missing
    (("gpu", "cuda", "big"), "write", ("gpu", "cuda"), True),
    (("gpu", "cuda"), "write", ("tpu",), False),
    (("gpu",), "read", ("gpu",), False),
]


@pytest.fixture
async def sessions(db_url):
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


async def _case(db, worker_tags, grant, task_tags) -> tuple[int, int]:
    now = utcnow()
    name = uuid.uuid4().hex[:12]
    user = await db.scalar(
        insert(User)
        .values(name=name, password_hash="x", state="active", token_version=0, group_quota=1)
        .returning(User.id)
    )
    group = await db.scalar(
        insert(Group).values(name=name, creator_id=user, storage_quota=0).returning(Group.id)
    )
    worker = await db.scalar(
        insert(Worker)
        .values(uuid=uuid.uuid4(), creator_id=user, state="online", drain=False, slots=1)
        .returning(Worker.id)
    )
    task = await db.scalar(
        insert(Task)
        .values(
            uuid=uuid.uuid4(),
            group_id=group,
            seq=1,
            creator_id=user,
            state="ready",
            command=["x"],
            command_line="x",
            timeout=60.0,
            max_attempts=3,
            created_at=now,
        )
        .returning(Task.id)
    )
    for tag in worker_tags:
        await db.execute(insert(WorkerTag).values(worker_id=worker, tag=tag))
    for tag in task_tags:
        await db.execute(insert(TaskTag).values(task_id=task, tag=tag))
    if grant:
        await db.execute(insert(WorkerGrant).values(worker_id=worker, group_id=group, role=grant))
    return worker, task


async def test_the_matching_rule_on_both_backends(sessions):
    """S1: a write/admin grant for the task's group, and worker tags empty or ⊇ task tags."""
    async with sessions.begin() as db:
        outcomes = {}
        for worker_tags, grant, task_tags, _ in CASES:
            worker, task = await _case(db, worker_tags, grant, task_tags)
            found = await db.scalar(select(Task.id).where(Task.id == task, may_take(worker)))
            outcomes[worker_tags, grant, task_tags] = found == task
    assert outcomes == {case[:3]: case[3] for case in CASES}


async def test_each_part_of_the_rule_can_be_asked_alone(sessions):
    """``explain`` names the blocking part: the grant and the tags are separate conditions."""
    async with sessions.begin() as db:
        worker, task = await _case(db, ("gpu",), "read", ("gpu", "cuda"))
        parts = {
            name: await db.scalar(select(condition).select_from(Task).where(Task.id == task))
            for name, condition in match_conditions(worker).items()
        }
    assert parts == {"grant": False, "tags": False}


async def test_a_waiter_made_before_the_look_misses_no_wake_up():
    """A notification between the waiter's creation and its wait is kept, not lost."""
    hub = Wakeups()
    with hub.waiter(groups=["lab"], workers=["w1"]) as waiter:
        hub.notify(groups=["lab"])  # e.g. a submit committed while the fetch looked
        assert await asyncio.wait_for(waiter.wait(5), 1) == {"group:lab"}
        assert await waiter.wait(0.01) == set()
        hub.notify(groups=["other"])
        assert await waiter.wait(0.01) == set()
        assert waiter.watch(groups=["other"]) is True
        assert waiter.watch(groups=["other"]) is False
        hub.notify(workers=["w1"])
        assert await waiter.wait(1) == {"worker:w1"}
    assert hub.parked == 0


async def test_closing_answers_parked_and_later_fetches_at_once():
    """Shutdown releases every parked fetch, and none parks after it (S4, graceful stop)."""
    hub = Wakeups()
    with hub.waiter(groups=["lab"]) as parked:
        waiting = asyncio.ensure_future(parked.wait(30))
        await asyncio.sleep(0)
        hub.release()
        assert await asyncio.wait_for(waiting, 1) == {CLOSING}
    with hub.waiter(workers=["w1"]) as late:
        assert await asyncio.wait_for(late.wait(30), 1) == {CLOSING}
