"""Task and worker changes reach the event bus after commit, and workers ship live logs
(issue 7). In-process: the streams' finite forms (a log without ``follow``) are read through
the ASGI transport; the live forms are proven with real processes in tests/e2e."""

from __future__ import annotations

import time

import pytest

from mitosis_sdk import errors
from mitosis_sdk.schemas import TaskSpec
from mitosis_sdk.schemas.events import LogEnd
from tests.integration.server.fleet import start_worker


def bus(app):
    return app.state.coordinator.events


async def test_submit_cancel_and_worker_changes_are_published_with_their_groups(
    app, make_user, transport
):
    """ready, cancelled and a worker's registration are events carrying who may see them;
    a cancelled task's live log is closed."""
    alice = await make_user("alice")
    start = await bus(app).latest_cursor()
    task = await alice.submit_task(TaskSpec(command=["true"]))
    await alice.cancel_task(task.uuid)
    worker = await start_worker(alice, transport)
    events = await bus(app).read_events(start)
    mine = [(e.kind, e.payload["state"]) for e in events if e.object_id == str(task.uuid)]
    assert mine == [("task.state", "ready"), ("task.state", "cancelled")]
    assert all(e.groups == ["alice"] for e in events if e.object_id == str(task.uuid))
    (registered,) = [e for e in events if e.object_id == worker.uuid]
    assert (registered.kind, registered.groups) == ("worker.state", ["alice"])
    assert isinstance((await bus(app).read_log(str(task.uuid)))[-1], LogEnd)


async def test_a_refused_submit_publishes_nothing(app, make_user):
    """Nothing is published for a change that did not commit."""
    alice = await make_user("alice")
    start = await bus(app).latest_cursor()
    with pytest.raises(errors.ApiError):
        await alice.submit_task(TaskSpec(command=["true"], group="nobody-here"))
    assert await bus(app).read_events(start) == []


async def test_the_holding_worker_ships_lines_that_readers_of_the_group_can_read(
    app, make_user, transport
):
    """Lines arrive in order; another group's member gets a 404 for the task's log."""
    alice, bob = await make_user("alice"), await make_user("bob")
    worker = await start_worker(alice, transport)
    task = await alice.submit_task(TaskSpec(command=["true"]))
    held = await worker.fetch_one()
    lines = [("stdout", "one"), ("stderr", "two"), ("stdout", "three")]
    await worker.client.ship_logs(worker.uuid, held.task, held.attempt, lines)
    await worker.finish(held)
    read = [(x.stream, x.text) async for x in alice.follow_logs(task.uuid, follow=False)]
    assert read == lines
    with pytest.raises(errors.NotFound):
        async for _ in bob.follow_logs(task.uuid, follow=False):
            pass
    with pytest.raises(errors.Conflict):
        await worker.client.ship_logs(worker.uuid, held.task, held.attempt, lines)


async def test_a_log_stream_reports_when_it_is_accepted_and_stamps_each_line(
    app, make_user, transport
):
    """``on_connect`` runs once the coordinator accepts the stream (never for a 404), and
    every line carries the time the coordinator received it."""
    alice, bob = await make_user("alice"), await make_user("bob")
    worker = await start_worker(alice, transport)
    task = await alice.submit_task(TaskSpec(command=["true"]))
    held = await worker.fetch_one()
    before = time.time()
    await worker.client.ship_logs(worker.uuid, held.task, held.attempt, [("stdout", "one")])
    await worker.finish(held)
    accepted: list[str] = []
    stream = alice.follow_logs(task.uuid, follow=False, on_connect=lambda: accepted.append("a"))
    read = [line async for line in stream]
    assert accepted == ["a"]
    assert [line.text for line in read] == ["one"]
    assert before - 1 <= read[0].at <= time.time() + 1
    with pytest.raises(errors.NotFound):
        async for _ in bob.follow_logs(task.uuid, on_connect=lambda: accepted.append("b")):
            pass
    assert accepted == ["a"]
