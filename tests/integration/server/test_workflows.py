"""Arrays (T2), downstream tasks (T7), re-runs (T11) and "why pending" (T12) through the real
app on SQLite and PostgreSQL, with the miniature workers of ``fleet``."""

from __future__ import annotations

import asyncio
import json

import pytest

from mitosis_sdk import errors
from mitosis_sdk.schemas import (
    ArraySubmit,
    Member,
    Role,
    TaskChange,
    TaskFilter,
    TaskQuery,
    TaskRerun,
)
from tests.integration.server.fleet import spec, start_worker


@pytest.fixture
async def alice(make_user):
    return await make_user("alice")


async def test_an_array_of_100_with_throttle_5_never_runs_more_than_5(alice, transport):
    """%5: concurrent claims by several workers never hold more than 5 of the array; the
    rest cancel as one (T2)."""
    array = await alice.submit_array(spec("sweep", labels=["sweep"]), "0-99%5")
    assert (array.count, array.throttle) == (100, 5)
    workers = [await start_worker(alice, transport, slots=4) for _ in range(4)]
    seen_indexes = set()
    for _ in range(3):
        claims = await asyncio.gather(*(w.fetch(max_tasks=4) for w in workers))
        running = await alice.query_tasks(
            TaskQuery(array=array.array_id, states=["running"], limit=1)
        )
        assert 1 <= running.total <= 5
        assert sum(len(c) for c in claims) == running.total
        seen_indexes |= {t.array_index for c in claims for t in c}
        for worker, claimed in zip(workers, claims, strict=True):
            for task in claimed:
                await worker.finish(task)
    assert seen_indexes <= set(range(100))
    reply = await alice.cancel_tasks(task_filter=TaskFilter(array=array.array_id))
    assert len(reply.cancelled) == 100 - 15
    everything = await alice.query_tasks(TaskQuery(array=array.array_id, limit=1))
    assert everything.total == 100


async def test_bad_array_specs_are_refused(alice):
    """5-1, over the limit, %0 and junk: refused, nothing created (V)."""
    for bad in ("5-1", "0-1000000", "0-9%0", "a-b", "1,1"):
        with pytest.raises(ValueError, match="array"):
            ArraySubmit(spec=spec("x"), array=bad)
    assert (await alice.query_tasks()).total == 0


async def test_a_task_writes_two_downstream_specs_that_run_after_it(alice, transport):
    """Both specs become dependents of the writer, in its group, linked both ways (T7)."""
    writer = await alice.submit_task(spec("writer"))
    worker = await start_worker(alice, transport)
    (claimed,) = await worker.fetch()
    content = json.dumps([{"command": ["next", "1"]}, {"command": ["next", "2"]}])
    reply = await worker.client.submit_downstream(worker.uuid, writer.uuid, 1, content.encode())
    assert reply.error is None
    assert len(reply.tasks) == 2
    assert all(t.state == "pending" for t in reply.tasks)
    await worker.finish(claimed)
    for _ in reply.tasks:
        (next_task,) = await worker.fetch()
        assert next_task.upstream == writer.uuid
        await worker.finish(next_task)
    info = await alice.get_task(writer.uuid)
    assert info.downstream == [t.uuid for t in reply.tasks]
    child = await alice.get_task(reply.tasks[0].uuid)
    assert (child.upstream, child.state, child.creator) == (writer.uuid, "completed", "alice")
    assert [d.condition for d in child.depends_on] == ["afterany"]


async def test_malformed_downstream_specs_are_recorded_on_the_writer(alice, transport):
    """Bad JSON and an invalid spec: downstream_submit_failed on the writer, no task made."""
    writer = await alice.submit_task(spec("writer"))
    worker = await start_worker(alice, transport)
    await worker.fetch()
    reply = await worker.client.submit_downstream(worker.uuid, writer.uuid, 1, "[{oops")
    assert reply.error.startswith("downstream_submit_failed")
    good_then_bad = json.dumps([{"command": ["ok"]}, {"command": []}])
    reply = await worker.client.submit_downstream(worker.uuid, writer.uuid, 1, good_then_bad)
    assert "spec [1]" in reply.error
    info = await alice.get_task(writer.uuid)
    assert info.downstream_error.startswith("downstream_submit_failed")
    assert info.downstream == []
    assert (await alice.query_tasks()).total == 1
    with pytest.raises(errors.NotFound):  # fenced on the attempt the worker holds
        await worker.client.submit_downstream(worker.uuid, writer.uuid, 2, "[]")


async def test_rerun_copies_the_spec_with_changes(alice, transport):
    """A re-run is a new task from the old spec, edited, linked by rerun_of (T11)."""
    original = await alice.submit_task(spec("train", env={"SEED": "1"}, retries=2))
    again = await alice.rerun_task(
        original.uuid, TaskRerun(change=TaskChange(env={"SEED": "2"}), labels=["again"])
    )
    info = await alice.get_task(again.uuid)
    assert (info.command, info.env, info.retries, info.labels, info.rerun_of) == (
        ["train"],
        {"SEED": "2"},
        2,
        ["again"],
        original.uuid,
    )


async def test_explain_names_the_blocking_rule(alice, transport, make_user):
    """No worker, missing tag, no grant, all slots busy, draining: each named (T12)."""
    task = await alice.submit_task(spec("x", tags=["gpu"]))
    assert task.warning.startswith("NoWorker")
    explained = await alice.explain_task(task.uuid)
    assert explained.summary.startswith("NoWorker")
    assert explained.workers == []

    cpu = await start_worker(alice, transport, tags=["cpu"])
    rows = {str(r.worker): r for r in (await alice.explain_task(task.uuid)).workers}
    assert rows[cpu.uuid].blocked_by == ["missing_tags"]
    assert "gpu" in rows[cpu.uuid].detail

    bob = await make_user("bob")
    await alice.create_group("lab")
    await alice.update_members("lab", [Member(username="bob", role=Role.WRITE)])
    readonly = await start_worker(bob, transport, groups={"lab": Role.READ})
    lab_task = await bob.submit_task(spec("y", group="lab"))
    rows = {str(r.worker): r for r in (await bob.explain_task(lab_task.uuid)).workers}
    assert rows[readonly.uuid].blocked_by == ["no_grant"]

    gpu = await start_worker(alice, transport, tags=["gpu"])
    await alice.submit_task(spec("first", tags=["gpu"], priority=10))
    await gpu.fetch()
    explained = await alice.explain_task(task.uuid)
    rows = {str(r.worker): r for r in explained.workers}
    assert rows[gpu.uuid].blocked_by == ["busy"]
    assert explained.summary.startswith("Resources"), explained.workers

    await alice.drain_worker(gpu.uuid)
    rows = {str(r.worker): r for r in (await alice.explain_task(task.uuid)).workers}
    assert "draining" in rows[gpu.uuid].blocked_by
