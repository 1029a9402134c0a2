"""Task queries sorted by each sortable column, paged by cursor, on SQLite and PostgreSQL (T5).

One set of tasks covers every case a sort must place: each state, two groups, two workers and
none, exit codes, a signal, equal and different durations, and running tasks (no duration
yet). The expected order is computed here from the rules in ``TaskSort``'s docstring.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from mitosis_sdk import errors
from mitosis_sdk.schemas import (
    Dependency,
    Role,
    SortOrder,
    TaskInfo,
    TaskQuery,
    TaskSort,
    TaskState,
)
from mitosis_server.db.models import Task, utcnow
from tests.integration.server.fleet import spec, start_worker

RANK = ["completed", "cancelled", "failed", "pending", "ready", "running"]


@pytest.fixture
async def alice(make_user):
    client = await make_user("alice")
    await client.create_group("lab")
    return client


async def set_run_times(app, task: uuid.UUID, seconds: float) -> None:
    """Make the task's run last ``seconds`` (the workers here finish in microseconds)."""
    end = utcnow()
    async with app.state.coordinator.sessions.begin() as db:
        await db.execute(
            update(Task)
            .where(Task.uuid == task)
            .values(started_at=end - timedelta(seconds=seconds), finished_at=end)
        )


@pytest.fixture
async def mixed(alice, app, transport) -> list[uuid.UUID]:
    """Tasks in every state, in submission order."""
    groups = {"alice": Role.WRITE, "lab": Role.WRITE}
    one = await start_worker(alice, transport, groups=groups)
    two = await start_worker(alice, transport, groups=groups)
    order: list[uuid.UUID] = []

    async def run(worker, group: str, priority: int, seconds: float | None, **result):
        submitted = await alice.submit_task(spec("job", group=group, priority=priority))
        order.append(submitted.uuid)
        (assignment,) = await worker.fetch()
        if seconds is not None:
            await worker.finish(assignment, **result)
            await set_run_times(app, submitted.uuid, seconds)
        return submitted.uuid

    await run(one, "lab", 1, 5, exit_code=0)
    await run(two, "alice", 2, 60, exit_code=3)
    await run(one, "lab", 0, 2, exit_code=None, signal=9)
    await run(two, "lab", 5, 5, exit_code=0)
    running = await run(two, "alice", 3, None)
    for group, priority, extra in (
        ("lab", 4, {}),
        ("alice", 1, {"depends_on": [Dependency(task=running)]}),
        ("lab", 2, {}),
    ):
        order.append(
            (await alice.submit_task(spec("job", group=group, priority=priority, **extra))).uuid
        )
    await alice.cancel_task(order[-1])
    return order


def expected_key(task: TaskInfo, sort: TaskSort) -> tuple:
    """The sort key by the documented rules; missing values sort lowest."""
    match sort:
        case TaskSort.CREATED:
            return ()
        case TaskSort.PRIORITY:
            return (task.priority,)
        case TaskSort.STATE:
            return (RANK.index(task.state),)
        case TaskSort.GROUP:
            return (task.group,)
        case TaskSort.WORKER:
            return (0, "") if task.worker is None else (1, str(task.worker))
        case TaskSort.EXIT_CODE:
            code = task.exit_code if task.signal is None else 128 + task.signal
            return (0, 0) if code is None else (1, code)
        case TaskSort.DURATION:
            if task.finished_at is None or task.started_at is None:
                return (0, 0)
            return (1, round((task.finished_at - task.started_at).total_seconds() * 1000))


async def read_all(
    client, sort: TaskSort, order: SortOrder = SortOrder.DESC, limit: int = 3, cursor=None
) -> list[TaskInfo]:
    """Every task of the query, a page at a time (from ``cursor``, if given)."""
    tasks = []
    for _ in range(20):
        page = await client.query_tasks(
            TaskQuery(sort=sort, order=order, limit=limit, cursor=cursor)
        )
        tasks += page.tasks
        cursor = page.next_cursor
        if cursor is None:
            return tasks
    raise AssertionError("the cursor never ended")


@pytest.mark.parametrize("sort", list(TaskSort))
async def test_each_sort_pages_in_its_order_and_reverses_exactly(alice, mixed, sort):
    """Descending by the column (ties: newest first), page by page through the cursor;
    ascending is the very same list reversed."""
    descending = await read_all(alice, sort, SortOrder.DESC)
    position = {task: n for n, task in enumerate(mixed)}
    wanted = sorted(
        descending, key=lambda t: (expected_key(t, sort), position[t.uuid]), reverse=True
    )
    assert [t.uuid for t in descending] == [t.uuid for t in wanted]
    ascending = await read_all(alice, sort, SortOrder.ASC, limit=2)
    assert [t.uuid for t in ascending] == [t.uuid for t in reversed(descending)]


async def test_state_order_puts_running_first_and_completed_last(alice, mixed):
    """Descending by state reads as an operator scans a queue."""
    tasks = await read_all(alice, TaskSort.STATE, SortOrder.DESC)
    states = [t.state for t in tasks]
    assert states == sorted(states, key=RANK.index, reverse=True)
    assert (states[0], states[-1]) == (TaskState.RUNNING, TaskState.COMPLETED)


async def test_a_state_cursor_stays_put_while_a_task_arrives(alice, mixed):
    """A task submitted between pages neither repeats nor pushes out a row already read."""
    first = await alice.query_tasks(TaskQuery(sort=TaskSort.STATE, limit=3))
    await alice.submit_task(spec("late", group="lab"))
    rest = await read_all(alice, TaskSort.STATE, cursor=first.next_cursor)
    seen = [t.uuid for t in first.tasks + rest]
    assert sorted(seen) == sorted(mixed)
    assert len(seen) == len(set(seen))


async def test_a_cursor_of_another_sort_or_order_is_refused(alice, mixed):
    """400, saying what is wrong, for a cursor of another sort or order."""
    page = await alice.query_tasks(TaskQuery(sort=TaskSort.WORKER, limit=2))
    for other in (
        TaskQuery(sort=TaskSort.EXIT_CODE, cursor=page.next_cursor),
        TaskQuery(sort=TaskSort.WORKER, order=SortOrder.ASC, cursor=page.next_cursor),
    ):
        with pytest.raises(errors.BadRequest, match="cursor"):
            await alice.query_tasks(other)


@pytest.mark.parametrize(
    "keys",
    [[1, "not-a-uuid"], [1], ["1", str(uuid.uuid4())], [True, str(uuid.uuid4())], "x"],
    ids=["bad-uuid", "too-few", "text-flag", "bool-flag", "not-a-list"],
)
async def test_a_forged_cursor_is_a_400_not_a_500(alice, mixed, keys):
    """Cursors come back from clients: any shape but the real one is refused cleanly."""
    raw = json.dumps(["worker", "desc", keys, 10]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    with pytest.raises(errors.BadRequest, match="cursor"):
        await alice.query_tasks(TaskQuery(sort=TaskSort.WORKER, cursor=cursor))
