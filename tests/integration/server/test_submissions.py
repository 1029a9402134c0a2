"""The submit path's guarantees under its bulk statements (FEATURES T2, T6, T12), on SQLite and
PostgreSQL: numbers unique and contiguous under concurrency, all-or-nothing really leaving
nothing, every spec of a batch stored as its own."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select, update

from mitosis_sdk import errors
from mitosis_sdk.schemas import Dependency, Member, Role, TaskQuery, TaskState
from mitosis_server.db import driver
from mitosis_server.db.models import Task, TaskLabel, TaskTag, utcnow
from mitosis_server.services import workflows
from mitosis_server.services.single_submit import RUNNABLE_FOR, RecentlyRunnable
from tests.integration.server.fleet import spec, start_worker


@pytest.fixture
async def alice(make_user):
    client = await make_user("alice")
    await client.create_group("lab")
    return client


async def _rows(app, *columns, **where):
    async with app.state.coordinator.sessions() as db:
        statement = select(*columns).filter_by(**where) if where else select(*columns)
        return (await db.execute(statement)).all()


async def test_concurrent_batches_to_one_group_get_unique_contiguous_numbers(alice):
    """Eight batches sent at once: every number 1..400 handed out once, each batch a run of
    consecutive numbers in the order of its specs, and nothing skipped (T2)."""
    replies = await asyncio.gather(
        *(alice.submit_tasks([spec("true", group="lab")] * 50) for _ in range(8))
    )
    batches = [[item.task.seq for item in reply.results] for reply in replies]
    assert sorted(seq for batch in batches for seq in batch) == list(range(1, 401))
    for batch in batches:
        assert batch == list(range(batch[0], batch[0] + 50))


async def test_concurrent_single_submits_get_unique_numbers(alice):
    """Forty single submissions at once to one group number 1..40, each once."""
    submitted = await asyncio.gather(
        *(alice.submit_task(spec("true", group="lab")) for _ in range(40))
    )
    assert sorted(t.seq for t in submitted) == list(range(1, 41))


async def test_a_refused_all_or_nothing_batch_leaves_nothing_and_no_gap(alice):
    """One spec naming an unknown dependency refuses the whole batch: no task, no tag or
    label row, and the next submission takes the next number (checks run before numbering)."""
    first = await alice.submit_task(spec("true", group="lab"))
    good = spec("true", group="lab", tags=["t"], labels=["l"])
    bad = spec("true", group="lab", depends_on=[Dependency(task=uuid.uuid4())])
    with pytest.raises(errors.BadRequest) as refused:
        await alice.submit_tasks([good] * 5 + [bad], all_or_nothing=True)
    assert "tasks[5]" in refused.value.message
    assert (await alice.query_tasks(TaskQuery(group="lab"))).total == 1
    after = await alice.submit_task(spec("true", group="lab"))
    assert after.seq == first.seq + 1


async def test_an_array_of_10000_is_created_whole(alice, app):
    """An array of 10,000 becomes 10,000 ready tasks, indexes 0..9999, consecutive numbers,
    ids in index order (FIFO among equals, S2)."""
    reply = await alice.submit_array(spec("sweep", group="lab", labels=["big"]), "0-9999")
    assert reply.count == len(set(reply.tasks)) == 10_000
    rows = await _rows(
        app, Task.id, Task.seq, Task.array_index, Task.state, array_id=reply.array_id
    )
    rows.sort()
    assert [r.array_index for r in rows] == list(range(10_000))
    assert [r.seq for r in rows] == list(range(1, 10_001))
    assert {r.state for r in rows} == {"ready"}
    async with app.state.coordinator.sessions() as db:
        count = await db.scalar(select(func.count()).select_from(TaskLabel))
    assert count == 10_000


async def test_a_refused_array_creates_nothing(alice, make_user):
    """An array in a group where the caller may only read is refused whole (403), and one
    depending on an unknown task (400): no task of it exists."""
    bob = await make_user("bob")
    await alice.update_members("lab", [Member(username="bob", role=Role.READ)])
    with pytest.raises(errors.Forbidden):
        await bob.submit_array(spec("x", group="lab"), "0-9999")
    unknown = [Dependency(task=uuid.uuid4())]
    with pytest.raises(errors.BadRequest):
        await alice.submit_array(spec("x", group="lab", depends_on=unknown), "0-9999")
    assert (await alice.query_tasks(TaskQuery(group="lab"))).total == 0


async def test_each_spec_of_a_batch_is_stored_as_its_own(alice, app):
    """Different specs in one batch keep their own command, tags, labels, env, priority and
    dependencies; tag and label rows match (the ⊇ filters find them)."""
    upstream = await alice.submit_task(spec("up", group="lab"))
    specs = [
        spec("a", group="lab", tags=["gpu"], labels=["x"], env={"K": "1"}, priority=3),
        spec("b", group="lab", tags=["cpu", "big"], labels=[], timeout="1h"),
        spec("c", group="lab", depends_on=[Dependency(task=upstream.uuid)], labels=["y", "z"]),
    ]
    reply = await alice.submit_tasks(specs)
    a, b, c = [await alice.get_task(item.task.uuid) for item in reply.results]
    assert (a.command, a.tags, a.labels, a.env, a.priority) == (
        ["a"],
        ["gpu"],
        ["x"],
        {"K": "1"},
        3,
    )
    assert (b.command, b.tags, b.labels, b.timeout) == (["b"], ["cpu", "big"], [], 3600.0)
    assert (c.command, c.state, [d.task for d in c.depends_on]) == (
        ["c"],
        TaskState.PENDING,
        [upstream.uuid],
    )
    assert reply.results[2].task.state == TaskState.PENDING
    by_tag = await alice.query_tasks(TaskQuery(group="lab", tags=["cpu", "big"]))
    assert [t.uuid for t in by_tag.tasks] == [b.uuid]
    tags = await _rows(app, TaskTag.tag)
    assert sorted(t.tag for t in tags) == ["big", "cpu", "gpu"]


async def test_a_single_submit_stores_its_tag_and_label_rows_with_it(alice, app):
    """A single submission (on PostgreSQL the driver's one-statement insert) leaves the tag
    and label rows the claim's tag rule and the filters read."""
    plain = await alice.submit_task(spec("true", group="lab"))
    tagged = await alice.submit_task(
        spec("true", group="lab", tags=["gpu", "a100"], labels=["exp1"])
    )
    ((tagged_id,),) = await _rows(app, Task.id, uuid=tagged.uuid)
    assert sorted(r.tag for r in await _rows(app, TaskTag.tag, task_id=tagged_id)) == [
        "a100",
        "gpu",
    ]
    assert [r.label for r in await _rows(app, TaskLabel.label, task_id=tagged_id)] == ["exp1"]
    by_tag = await alice.query_tasks(TaskQuery(group="lab", tags=["gpu"]))
    assert [t.uuid for t in by_tag.tasks] == [tagged.uuid]
    assert (plain.seq, tagged.seq, tagged.state) == (1, 2, TaskState.READY)


async def test_a_refused_single_submit_takes_no_number(alice, make_user):
    """A reader's submit is a 403, a stranger's a 404, and neither uses up a number: the
    next accepted task gets the next one."""
    first = await alice.submit_task(spec("true", group="lab"))
    bob, carol = await make_user("bob"), await make_user("carol")
    await alice.update_members("lab", [Member(username="bob", role=Role.READ)])
    with pytest.raises(errors.Forbidden):
        await bob.submit_task(spec("true", group="lab"))
    with pytest.raises(errors.NotFound):
        await carol.submit_task(spec("true", group="lab"))
    with pytest.raises(errors.NotFound):
        await alice.submit_task(spec("true", group="nowhere"))
    assert (await alice.submit_task(spec("true", group="lab"))).seq == first.seq + 1
    assert (await alice.query_tasks(TaskQuery(group="lab"))).total == 2


async def test_a_partial_batch_numbers_only_the_accepted_specs(alice, make_user):
    """Refused specs of a batch (not all-or-nothing) take no number: the accepted ones are
    consecutive, and each refusal names its index."""
    specs = [spec("true", group="lab"), spec("true", group="nowhere"), spec("true", group="lab")]
    reply = await alice.submit_tasks(specs)
    assert [r.task.seq if r.task else None for r in reply.results] == [1, None, 2]
    assert reply.results[1].error.error == "not_found"
    assert "tasks[1]" in reply.results[1].error.message


async def test_single_submit_warns_only_when_no_live_worker_could_take_it(alice, transport):
    """A worker that may take the task silences the warning; one missing a tag does not
    (T12), and the warning names the rule."""
    await start_worker(alice, transport, tags=["cpu"])
    assert (await alice.submit_task(spec("x", tags=["cpu"]))).warning is None
    warned = await alice.submit_task(spec("x", tags=["gpu"]))
    assert warned.warning.startswith("NoWorker")
    assert "missing_tags" in warned.warning


async def test_a_yes_is_remembered_for_a_second_and_a_no_never(alice, app, transport):
    """A script's loop asks "could a live worker take it?" once a second, not once a task
    (PostgreSQL's single submit): a worker gone within that second goes unwarned about, one
    gone longer is warned about, and with no worker every submit is warned."""
    now = [0.0]
    app.state.coordinator.runnable = RecentlyRunnable(clock=lambda: now[0])
    assert (await alice.submit_task(spec("x"))).warning.startswith("NoWorker")
    worker = await start_worker(alice, transport)
    assert (await alice.submit_task(spec("x"))).warning is None  # a no was not remembered
    await worker.client.unregister_worker(worker.uuid)
    remembered = await alice.submit_task(spec("x"))
    if driver.uses_driver(app.state.coordinator.engine):
        assert remembered.warning is None
    else:  # SQLite's submit asks every time
        assert remembered.warning.startswith("NoWorker")
    now[0] += RUNNABLE_FOR
    assert (await alice.submit_task(spec("x"))).warning.startswith("NoWorker")


async def test_the_warning_weighs_the_tasks_own_group_and_each_workers_own_tags(
    alice, make_user, transport
):
    """Bob's worker serves lab and has the tag, alice's has not: lab's grant and that
    worker's tags are no business of a task in alice's own group, whatever lab holds (T12)."""
    bob = await make_user("bob")
    await alice.update_members("lab", [Member(username="bob", role=Role.WRITE)])
    await alice.submit_task(spec("x", group="lab"))
    await start_worker(bob, transport, groups={"lab": Role.WRITE}, tags=["gpu"])
    await start_worker(alice, transport, tags=["cpu"])
    warned = await alice.submit_task(spec("x", tags=["gpu"]))
    assert "missing_tags" in (warned.warning or "")
    assert (await alice.submit_task(spec("x", group="lab", tags=["gpu"]))).warning is None


async def test_a_dependent_submitted_while_its_upstream_ends_is_never_left_pending(
    alice, app, transport
):
    """The upstream's ending transaction is open — task marked completed, dependents settled,
    not yet committed — while a dependent is submitted: the submission waits for that commit
    and starts the dependent ready, instead of reading the old state after the settle has
    passed it by (which would leave it pending for ever, T6)."""
    upstream = await alice.submit_task(spec("up"))
    worker = await start_worker(alice, transport)
    assert (await worker.fetch_one()).task == upstream.uuid
    async with app.state.coordinator.sessions() as db:
        task_id = await db.scalar(select(Task.id).where(Task.uuid == upstream.uuid))
        await db.execute(update(Task).where(Task.id == task_id).values(state="completed"))
        await workflows.settle(db, utcnow(), upstream_ids=[task_id])
        submitting = asyncio.create_task(
            alice.submit_task(spec("down", depends_on=[Dependency(task=upstream.uuid)]))
        )
        await asyncio.sleep(0.3)  # the submission reaches the upstream and waits
        await db.commit()
    submitted = await asyncio.wait_for(submitting, 30)
    assert submitted.state == TaskState.READY
    assert (await alice.get_task(submitted.uuid)).state == TaskState.READY
