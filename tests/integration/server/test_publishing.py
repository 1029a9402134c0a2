"""Task and worker changes reach the event bus after commit, and workers ship live logs
(issue 7). In-process: the streams' finite forms (a log without ``follow``) are read through
the ASGI transport; the live forms are proven with real processes in tests/e2e."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from mitosis_sdk import errors
from mitosis_sdk.schemas import Dependency, TaskSpec
from mitosis_sdk.schemas.events import LogEnd
from tests.integration.server.fleet import heartbeat_at, silence, spec, start_worker


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
    await worker.client.ship_logs(worker.uuid, held.task, held.attempt, lines, first_line=1)
    await worker.finish(held)
    read = [(x.stream, x.text) async for x in alice.follow_logs(task.uuid, follow=False)]
    assert read == lines
    with pytest.raises(errors.NotFound):
        async for _ in bob.follow_logs(task.uuid, follow=False):
            pass
    with pytest.raises(errors.Conflict):
        await worker.client.ship_logs(worker.uuid, held.task, held.attempt, lines, first_line=4)


def states_of(events, task) -> list[str]:
    return [e.payload["state"] for e in events if e.object_id == str(task.uuid)]


def after(upstream, condition: str) -> list[Dependency]:
    return [Dependency(task=upstream.uuid, condition=condition)]


async def test_dependents_released_and_failed_by_a_result_are_published(app, make_user, transport):
    """A report that completes a task publishes its afterok dependent going ready and its
    afternotok dependent failing (and closes the failed one's log)."""
    alice = await make_user("alice")
    worker = await start_worker(alice, transport)
    up = await alice.submit_task(spec("up"))
    ok = await alice.submit_task(spec("ok", depends_on=after(up, "afterok")))
    notok = await alice.submit_task(spec("notok", depends_on=after(up, "afternotok")))
    start = await bus(app).latest_cursor()
    await worker.finish(await worker.fetch_one())
    events = await bus(app).read_events(start)
    assert states_of(events, up)[-1] == "completed"
    assert states_of(events, ok) == ["ready"]
    assert states_of(events, notok) == ["failed"]
    assert isinstance((await bus(app).read_log(str(notok.uuid)))[-1], LogEnd)


async def test_a_cancellation_publishes_the_dependents_it_fails(app, make_user):
    """Cancelling an upstream publishes its afterok dependent failing, and theirs."""
    alice = await make_user("alice")
    up = await alice.submit_task(spec("up"))
    down = await alice.submit_task(spec("down", depends_on=after(up, "afterok")))
    further = await alice.submit_task(spec("further", depends_on=after(down, "afterok")))
    start = await bus(app).latest_cursor()
    await alice.cancel_task(up.uuid)
    events = await bus(app).read_events(start)
    assert (states_of(events, up), states_of(events, down)) == (["cancelled"], ["failed"])
    assert states_of(events, further) == ["failed"]


async def test_the_liveness_sweep_publishes_lost_workers_requeues_and_failures(
    app, make_user, transport
):
    """A lost worker's event, its task requeued, and, once attempts run out, the task failed
    with its afterok dependent: every change the sweep commits is published."""
    alice = await make_user("alice")
    monitor = app.state.coordinator.liveness
    task = await alice.submit_task(spec("long", retries=0))
    down = await alice.submit_task(spec("down", depends_on=after(task, "afterok")))
    seen = []
    for _attempt in (1, 2, 3):
        worker = await start_worker(alice, transport)
        await worker.fetch()
        await silence(app, worker, 3600)
        start = await bus(app).latest_cursor()
        await monitor.sweep()
        events = await bus(app).read_events(start)
        lost = [e for e in events if e.object_id == worker.uuid]
        assert [(e.kind, e.payload["state"], e.groups) for e in lost] == [
            ("worker.state", "lost", ["alice"])
        ]
        seen += states_of(events, task)
    assert seen == ["ready", "ready", "failed"]
    assert states_of(events, down) == ["failed"]


async def test_an_overdue_task_released_by_the_sweep_is_published(app, make_user, transport):
    """A running task past its timeout plus the margin goes back to ready, and says so."""
    alice = await make_user("alice")
    task = await alice.submit_task(spec("x", timeout="1s"))
    worker = await start_worker(alice, transport)
    await worker.fetch()
    margin = app.state.coordinator.settings.report_margin
    moment = (await alice.get_task(task.uuid)).started_at + timedelta(seconds=margin + 10)
    await heartbeat_at(app, worker, moment)
    start = await bus(app).latest_cursor()
    await app.state.coordinator.liveness.sweep(now=moment)
    assert states_of(await bus(app).read_events(start), task) == ["ready"]


async def test_unregistering_publishes_the_tasks_it_requeues(app, make_user, transport):
    """A worker leaving with a task in hand: the worker's event and the task's requeue."""
    alice = await make_user("alice")
    task = await alice.submit_task(spec("x"))
    worker = await start_worker(alice, transport)
    await worker.fetch()
    start = await bus(app).latest_cursor()
    await worker.client.unregister_worker(worker.uuid)
    events = await bus(app).read_events(start)
    assert states_of(events, task) == ["ready"]
    assert [e.payload["state"] for e in events if e.object_id == worker.uuid] == ["stopped"]


@pytest.mark.parametrize("sign_of_life", ["heartbeat", "fetch"])
async def test_a_lost_worker_that_speaks_again_is_published_back_online(
    app, make_user, transport, sign_of_life
):
    """Lost, then a heartbeat or a fetch: one ``online`` event; the next sign of life, none."""
    alice = await make_user("alice")
    worker = await start_worker(alice, transport)
    await silence(app, worker, 3600)
    await app.state.coordinator.liveness.sweep()
    start = await bus(app).latest_cursor()
    for _ in range(2):
        if sign_of_life == "heartbeat":
            await worker.client.heartbeat(worker.uuid)
        else:
            await worker.client.fetch_tasks(worker.uuid, wait=0)
    mine = [e for e in await bus(app).read_events(start) if e.object_id == worker.uuid]
    assert [(e.kind, e.payload["state"], e.groups) for e in mine] == [
        ("worker.state", "online", ["alice"])
    ]


async def test_a_log_stream_reports_when_it_is_accepted_and_stamps_each_line(
    app, make_user, transport
):
    """``on_connect`` runs once the coordinator accepts the stream (never for a 404), and
    every line carries the time its chunk was shipped."""
    alice, bob = await make_user("alice"), await make_user("bob")
    worker = await start_worker(alice, transport)
    task = await alice.submit_task(TaskSpec(command=["true"]))
    held = await worker.fetch_one()
    before = time.time()
    await worker.client.ship_logs(
        worker.uuid, held.task, held.attempt, [("stdout", "one")], first_line=1
    )
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
