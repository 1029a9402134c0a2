"""Arrays (T2), downstream tasks (T7), re-runs (T11) and "why pending" (T12) through the real
app on SQLite and PostgreSQL, with the miniature workers of ``fleet``."""

from __future__ import annotations

import asyncio
import json

import pytest

from mitosis_sdk import errors
from mitosis_sdk.schemas import (
    ArraySubmit,
    Dependency,
    Grant,
    Member,
    Role,
    TaskChange,
    TaskFilter,
    TaskQuery,
    TaskRerun,
)
from tests.integration.server.fleet import silence, spec, start_worker


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
    labelled = await alice.query_tasks(TaskQuery(labels=["sweep"], limit=1))
    assert labelled.total == 100
    cancelled = await alice.query_tasks(
        TaskQuery(array=array.array_id, states=["cancelled"], limit=1)
    )
    assert cancelled.total == 85


BAD_ARRAYS = {
    "5-1": "the range ends before it starts",
    "0-1000000": "at most 10000 tasks per array",
    "0-9%0": "throttle %0 must be a whole number >= 1",
    "a-b": "is not N, N-M or N-M:STEP",
    "1,1": "an index appears twice",
    "0-9:0": "the step >= 1",
}


async def test_one_claim_takes_ordinary_tasks_and_fills_up_from_a_throttled_array(alice, transport):
    """A claim for 4 with one ordinary task waiting and a %2 array: the ordinary task and
    two of the array, never a third; with nothing ordinary left, the array alone (S2, T2)."""
    array = await alice.submit_array(spec("sweep"), "0-9%2")
    plain = await alice.submit_task(spec("plain"))
    worker = await start_worker(alice, transport, slots=4)
    taken = await worker.fetch(max_tasks=4)
    assert plain.uuid in {t.task for t in taken}
    assert sorted(t.array_index is not None for t in taken) == [False, True, True]
    other = await start_worker(alice, transport, slots=4)
    assert await other.fetch(max_tasks=4) == []  # the array's two run already
    for task in taken:
        await worker.finish(task)
    again = await other.fetch(max_tasks=4)
    assert [t.array_index is not None for t in again] == [True, True]
    assert array.throttle == 2


async def test_bad_array_specs_are_refused(alice):
    """5-1, over the limit, %0, a zero step and junk: the SDK refuses them before sending,
    the API with a 400 saying why, and nothing is created (V)."""
    answers = {}
    for bad, words in BAD_ARRAYS.items():
        with pytest.raises(ValueError, match="array"):
            ArraySubmit(spec=spec("x"), array=bad)
        body = {"spec": {"command": ["x"]}, "array": bad}
        reply = await alice._http.post("/api/tasks/array", json=body, headers=alice._headers())
        answers[bad] = (reply.status_code, words in reply.json()["message"])
    assert answers == {bad: (400, True) for bad in BAD_ARRAYS}
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


async def test_a_downstream_spec_keeps_the_condition_it_names(alice, transport):
    """A spec depending afterok on its writer keeps that condition (no afterany is added):
    when the writer fails, the downstream task fails with dependency_never_satisfied (T7)."""
    writer = await alice.submit_task(spec("writer"))
    worker = await start_worker(alice, transport)
    (claimed,) = await worker.fetch()
    content = json.dumps(
        [{"command": ["next"], "depends_on": [{"task": str(writer.uuid), "condition": "afterok"}]}]
    )
    reply = await worker.client.submit_downstream(worker.uuid, writer.uuid, 1, content)
    (child,) = reply.tasks
    await worker.finish(claimed, exit_code=1)
    info = await alice.get_task(child.uuid)
    assert [(d.task, d.condition) for d in info.depends_on] == [(writer.uuid, "afterok")]
    assert (info.state, info.reason) == ("failed", "dependency_never_satisfied")


async def test_downstream_tasks_need_the_worker_to_grant_the_writer_group(alice, transport):
    """A worker whose write grant on the writer's group was taken away mid-run submits
    nothing: 403, and the writer has no downstream link (T7)."""
    await alice.create_group("lab")
    writer = await alice.submit_task(spec("writer", group="lab"))
    worker = await start_worker(alice, transport, groups={"lab": Role.WRITE})
    (claimed,) = await worker.fetch()
    await alice.update_worker_grants(worker.uuid, [Grant(group="lab", role=Role.READ)])
    with pytest.raises(errors.Forbidden, match="grant"):
        await worker.client.submit_downstream(worker.uuid, writer.uuid, 1, '{"command": ["x"]}')
    assert (await alice.get_task(writer.uuid)).downstream == []
    assert (await alice.query_tasks()).total == 1
    await worker.finish(claimed)


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
    elsewhere = json.dumps({"command": ["ok"], "group": "mitosis_admin"})
    reply = await worker.client.submit_downstream(worker.uuid, writer.uuid, 1, elsewhere)
    assert "writer's group 'alice'" in reply.error
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


async def test_an_array_no_worker_could_take_is_warned_once_for_all(alice, transport):
    """An array is submitted like a task: with no live worker for its spec the reply carries
    the NoWorker warning; once a worker could take it, no warning (T12)."""
    stranded = await alice.submit_array(spec("sweep", tags=["gpu"]), "0-9")
    assert stranded.warning.startswith("NoWorker")
    await start_worker(alice, transport, tags=["gpu"])
    served = await alice.submit_array(spec("sweep", tags=["gpu"]), "0-9")
    assert served.warning is None


async def test_explain_names_offline_workers_dependencies_and_the_array_throttle(
    app, alice, transport
):
    """A lost worker is offline; a pending task waits for its upstream, named; an array at
    its %N limit is held by the throttle — each a row reason and the summary's code (T12)."""
    up = await alice.submit_task(spec("up"))
    down = await alice.submit_task(
        spec("down", depends_on=[Dependency(task=up.uuid, condition="afterok")])
    )
    explained = await alice.explain_task(down.uuid)
    assert explained.summary == f"Dependency: waiting for {up.uuid}"
    assert explained.workers == []

    array = await alice.submit_array(spec("sweep"), "0-1%1")
    worker = await start_worker(alice, transport, slots=2)
    claimed = await worker.fetch(max_tasks=2)
    assert [t.task for t in claimed] == [up.uuid, array.tasks[0]]
    explained = await alice.explain_task(array.tasks[1])
    assert explained.summary == "ArrayThrottle: array throttle: 1 of 1 running"
    (row,) = explained.workers
    assert row.blocked_by == ["busy", "array_throttle"]

    coordinator = app.state.coordinator
    await silence(app, worker, coordinator.settings.heartbeat_timeout + 1)
    await coordinator.liveness.sweep()
    lonely = await alice.submit_task(spec("lonely"))
    assert lonely.warning.startswith("NoWorker")
    explained = await alice.explain_task(lonely.uuid)
    assert [r.blocked_by for r in explained.workers] == [["offline"]]
    assert explained.summary == "NoWorker: no live worker could take it (1 offline)"
