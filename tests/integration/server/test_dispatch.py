"""Workers claiming and reporting through the real app, on SQLite and PostgreSQL
(FEATURES S1-S5, T3, T4, T8, T9, W1-W4), with the miniature worker of ``fleet``."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import msgspec
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from mitosis_sdk import errors
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import (
    MAX_SLOTS,
    Grant,
    Member,
    Role,
    ShutdownMode,
    TaskPhase,
    TaskReason,
    TaskState,
    WorkerQuery,
    WorkerState,
)
from mitosis_server.app import create_app
from mitosis_server.db.models import User
from tests.integration.server.fleet import heartbeat_at, silence, spec, start_worker

WAIT = 10.0  # long-poll bound in tests: far above what a wake-up takes


@pytest.fixture
async def alice(make_user):
    client = await make_user("alice")
    await client.create_group("lab")
    return client


async def test_a_claimed_task_runs_through_its_phases_to_completed(alice, transport):
    """Claim → phases → result: the task ends completed with one attempt recorded (T3, T4)."""
    task = await alice.submit_task(spec("echo", "hi", env={"A": "1"}, timeout="1m"))
    worker = await start_worker(alice, transport)
    (claimed,) = await worker.fetch()
    assert (claimed.task, claimed.attempt, claimed.env, claimed.timeout) == (
        task.uuid,
        1,
        {"A": "1"},
        60.0,
    )
    for phase in (TaskPhase.FETCHING, TaskPhase.SPAWNED):
        ack = await worker.client.report_phase(worker.uuid, task.uuid, 1, phase)
        assert (ack.state, ack.cancel) == (TaskState.RUNNING, False)
    running = await alice.get_task(task.uuid)
    assert (running.state, running.phase, str(running.worker)) == (
        "running",
        "spawned",
        worker.uuid,
    )
    with pytest.raises(errors.Conflict):  # phases only move forward
        await worker.client.report_phase(worker.uuid, task.uuid, 1, TaskPhase.FETCHING)
    assert (await worker.finish(claimed)).state == TaskState.COMPLETED
    done = await alice.get_task(task.uuid)
    assert (done.state, done.exit_code, done.reason) == ("completed", 0, None)
    assert [(a.attempt, a.state, a.exit_code) for a in done.attempts] == [(1, "completed", 0)]
    assert (await worker.fetch()) == []


async def test_failures_keep_exit_code_signal_and_reason_apart(alice, transport):
    """Non-zero exit, a signal and a timeout each fail the task with their own reason (T3)."""
    tasks = (await alice.submit_tasks([spec("a"), spec("b"), spec("c")])).results
    worker = await start_worker(alice, transport, slots=3)
    claimed = {str(c.task): c for c in await worker.fetch(max_tasks=3)}
    a, b, c = (claimed[str(t.task.uuid)] for t in tasks)
    await worker.finish(a, exit_code=2)
    await worker.finish(b, exit_code=None, signal=9)
    await worker.finish(c, exit_code=None, signal=15, reason=TaskReason.TIMEOUT, message="10m")
    got = [await alice.get_task(t.task.uuid) for t in tasks]
    assert [(t.state, t.exit_code, t.signal, t.reason) for t in got] == [
        ("failed", 2, None, "nonzero_exit"),
        ("failed", None, 9, "signal"),
        ("failed", None, 15, "timeout"),
    ]


async def test_higher_priority_first_then_oldest_first(alice, transport):
    """S2: priority descending, then submission order among equals."""
    reply = await alice.submit_tasks(
        [spec("low", priority=-1), spec("a"), spec("high", priority=5), spec("b"), spec("c")]
    )
    labels = ["low", "a", "high", "b", "c"]
    names = dict(zip((i.task.uuid for i in reply.results), labels, strict=True))
    worker = await start_worker(alice, transport)
    order = []
    while claimed := await worker.fetch():
        order.append(names[claimed[0].task])
        await worker.finish(claimed[0])
    assert order == ["high", "a", "b", "c", "low"]


async def test_tags_and_grants_decide_who_may_take_a_task(alice, make_user, transport):
    """S1 end to end, and S5: changed tags and grants apply at the next fetch."""
    bob = await make_user("bob")
    await alice.update_members("lab", [Member(username="bob", role=Role.WRITE)])
    gpu = await alice.submit_task(spec("train", group="lab", tags=["gpu", "cuda12"]))
    cpu_worker = await start_worker(bob, transport, tags=["cpu"], groups={"lab": Role.WRITE})
    reader = await start_worker(bob, transport, groups={"lab": Role.READ})
    assert await cpu_worker.fetch() == []
    assert await reader.fetch() == []
    await bob.update_worker_tags(cpu_worker.uuid, ["gpu", "cuda12", "big"])
    (claimed,) = await cpu_worker.fetch()
    assert claimed.task == gpu.uuid
    await cpu_worker.finish(claimed)
    untagged = await alice.submit_task(spec("any", group="lab"))
    assert await reader.fetch() == []
    await bob.update_worker_grants(reader.uuid, [Grant(group="lab", role=Role.WRITE)])
    assert [t.task for t in await reader.fetch()] == [untagged.uuid]


async def test_slots_cap_what_a_worker_holds(alice, transport):
    """A worker with 2 slots never holds more than 2 attempts (S4 capacity)."""
    await alice.submit_tasks([spec(str(i)) for i in range(5)])
    worker = await start_worker(alice, transport, slots=2)
    first = await worker.fetch(max_tasks=5)
    assert len(first) == 2
    assert await worker.fetch(max_tasks=5) == []
    await worker.finish(first[0])
    assert len(await worker.fetch(max_tasks=5)) == 1


async def test_a_worker_may_hold_tasks_ahead_of_its_slots_as_many_as_it_asks(alice, transport):
    """``ahead``: a worker that queues tasks itself holds its slots and that many more,
    never more than MAX_SLOTS in all; a request over that is refused (400)."""
    await alice.submit_tasks([spec(str(i)) for i in range(9)])
    worker = await start_worker(alice, transport, slots=2)
    first = await worker.fetch(max_tasks=9, ahead=3)
    assert len(first) == 5
    assert await worker.fetch(max_tasks=9, ahead=3) == []
    assert len(await worker.fetch(max_tasks=9, ahead=4)) == 1
    await worker.finish(first[0])
    assert len(await worker.fetch(max_tasks=9)) == 0  # without ahead: its 2 slots are full
    assert len(await worker.fetch(max_tasks=9, ahead=4)) == 1
    with pytest.raises(errors.BadRequest):
        await worker.fetch(max_tasks=1, ahead=MAX_SLOTS + 1)


async def test_a_task_handed_back_unstarted_is_requeued_without_using_an_attempt(
    app, alice, transport
):
    """A worker hands back a task it held ahead and never started (``worker_stopped`` in
    phase ``waiting``): the task is ready again and the attempt does not count, so even a
    last attempt handed back leaves it to run, not failed."""
    task = await alice.submit_task(spec("quick"))
    monitor = app.state.coordinator.liveness
    for _ in (1, 2):  # two attempts lost with their workers
        lost = await start_worker(alice, transport)
        await lost.fetch()
        await silence(app, lost, 3600)
        await monitor.sweep()
    worker = await start_worker(alice, transport)
    (last,) = await worker.fetch()
    assert last.attempt == 3
    handed_back = await worker.finish(
        last,
        exit_code=None,
        reason=TaskReason.WORKER_STOPPED,
        phase=TaskPhase.WAITING,
        message="handed back unstarted: the worker is draining",
    )
    assert handed_back.state == TaskState.READY
    info = await alice.get_task(task.uuid)
    assert (info.state, info.attempt, info.max_attempts) == ("ready", 3, 4)
    returned = info.attempts[-1]
    assert (returned.state, returned.reason, returned.phase) == (
        "requeued",
        "worker_stopped",
        "waiting",
    )
    (again,) = await worker.fetch()
    assert again.attempt == 4
    assert (await worker.finish(again)).state == TaskState.COMPLETED


async def test_a_parked_fetch_returns_the_task_submitted_meanwhile(alice, transport):
    """S4: an idle worker's long poll is woken by a submission, well before it expires."""
    worker = await start_worker(alice, transport)
    fetch = asyncio.create_task(worker.fetch(wait=WAIT))
    await asyncio.sleep(0.3)
    assert not fetch.done()
    started = asyncio.get_running_loop().time()
    submitted = await alice.submit_task(spec("now"))
    claimed = await asyncio.wait_for(fetch, WAIT)
    assert [t.task for t in claimed] == [submitted.uuid]
    assert asyncio.get_running_loop().time() - started < WAIT / 2


async def test_cancel_of_a_running_task_reaches_its_worker(alice, transport):
    """T9: the task is cancelled at once; the worker hears it in its parked fetch and its
    heartbeat, kills the attempt and reports; the verdict stays cancelled."""
    task = await alice.submit_task(spec("sleep", "1000"))
    worker = await start_worker(alice, transport, slots=2)
    (claimed,) = await worker.fetch()
    await worker.client.report_phase(worker.uuid, task.uuid, 1, TaskPhase.SPAWNED)
    parked = asyncio.create_task(worker.client.fetch_tasks(worker.uuid, wait=WAIT))
    await asyncio.sleep(0.3)
    info = await alice.cancel_task(task.uuid)
    assert (info.state, info.cancel_pending) == ("cancelled", True)
    woken = await asyncio.wait_for(parked, WAIT)
    order = [(c.task, c.attempt) for c in woken.commands.cancel]
    assert order == [(task.uuid, 1)]
    commands = await worker.heartbeat()
    assert [(c.task, c.attempt) for c in commands.cancel] == [(task.uuid, 1)]
    ack = await worker.client.report_phase(worker.uuid, task.uuid, 1, TaskPhase.EXITED)
    assert ack.cancel
    await worker.finish(claimed, exit_code=None, signal=15)
    done = await alice.get_task(task.uuid)
    assert (done.state, done.signal, done.cancel_pending) == ("cancelled", 15, False)
    assert (await worker.heartbeat()).cancel == []


async def test_a_lost_worker_loses_its_task_until_the_attempts_run_out(app, alice, transport):
    """T8: silent worker → task ready again (attempt 2); the old attempt's report is 409;
    after the third lost attempt the task fails with worker_lost."""
    monitor = app.state.coordinator.liveness
    task = await alice.submit_task(spec("long"))
    holders = []
    for attempt in (1, 2, 3):
        worker = await start_worker(alice, transport)
        (claimed,) = await worker.fetch()
        assert (claimed.task, claimed.attempt) == (task.uuid, attempt)
        holders.append((worker, claimed))
        await silence(app, worker, 3600)
        swept = await monitor.sweep()
        assert swept.lost_workers == [worker.uuid]
        state = (await alice.get_task(task.uuid)).state
        assert state == (TaskState.READY if attempt < 3 else TaskState.FAILED)
        if attempt == 2:
            stale_worker, stale = holders[0]
            with pytest.raises(errors.Conflict) as refused:
                await stale_worker.finish(stale, exit_code=0)
            assert "superseded" in refused.value.message
    failed = await alice.get_task(task.uuid)
    assert (failed.state, failed.reason, failed.attempt) == ("failed", "worker_lost", 3)
    assert [(a.attempt, a.state, a.reason) for a in failed.attempts] == [
        (n, "lost", "worker_lost") for n in (1, 2, 3)
    ]
    lost = await alice.get_worker(holders[0][0].uuid)
    assert (lost.state, lost.running) == (WorkerState.LOST, [])
    assert (await monitor.sweep()).lost_workers == []  # a second sweep finds nothing new


async def test_a_lost_worker_that_returns_is_told_to_kill_its_stale_attempt(app, alice, transport):
    """A worker declared lost that heartbeats again is back online and gets the attempt it
    no longer holds in its cancel list, so a zombie never runs next to the new attempt."""
    task = await alice.submit_task(spec("x"))
    worker = await start_worker(alice, transport)
    await worker.fetch()
    await silence(app, worker, 3600)
    await app.state.coordinator.liveness.sweep()
    commands = await worker.heartbeat()
    assert commands.state == WorkerState.ONLINE
    assert [(c.task, c.attempt) for c in commands.cancel] == [(task.uuid, 1)]


async def test_a_running_task_past_its_deadline_is_released(app, alice, transport):
    """A task with no report for its timeout plus the margin is requeued, though its worker
    still heartbeats (it has forgotten the task)."""
    task = await alice.submit_task(spec("x", timeout="1s"))
    worker = await start_worker(alice, transport)
    await worker.fetch()
    monitor = app.state.coordinator.liveness
    deadline = (await alice.get_task(task.uuid)).started_at + timedelta(
        seconds=1 + app.state.coordinator.settings.report_margin
    )
    for moment in (deadline - timedelta(seconds=5), deadline + timedelta(seconds=5)):
        await heartbeat_at(app, worker, moment)  # the worker itself is alive then
        swept = await monitor.sweep(now=moment)
        assert swept.lost_workers == []
    assert swept.requeued == 1
    info = await alice.get_task(task.uuid)
    assert (info.state, info.attempts[0].reason) == ("ready", "report_overdue")


async def test_reports_must_come_from_the_worker_holding_the_attempt(alice, transport):
    """Reports for tasks a worker does not hold, or for unknown tasks, change nothing."""
    task = await alice.submit_task(spec("x"))
    holder = await start_worker(alice, transport)
    other = await start_worker(alice, transport)
    (claimed,) = await holder.fetch()
    with pytest.raises(errors.Forbidden):
        await other.client.report_result(other.uuid, task.uuid, 1, exit_code=0)
    with pytest.raises(errors.NotFound):
        await holder.client.report_result(holder.uuid, task.uuid, 2, exit_code=0)
    with pytest.raises(errors.NotFound):
        await holder.client.report_result(holder.uuid, uuid.uuid4(), 1, exit_code=0)
    with pytest.raises(errors.BadRequest):  # an attempt with no outcome at all
        await holder.client.request(
            "POST", f"/api/workers/{holder.uuid}/tasks/{task.uuid}/result", body={"attempt": 1}
        )
    assert (await alice.get_task(task.uuid)).state == TaskState.RUNNING
    await holder.finish(claimed)
    with pytest.raises(errors.Conflict):  # a different result for the ended attempt
        await holder.finish(claimed, exit_code=1)


async def test_a_result_sent_again_is_answered_like_the_first(alice, transport):
    """A retried result (its reply was lost) gets the same answer and changes nothing (T8)."""
    task = await alice.submit_task(spec("x"))
    worker = await start_worker(alice, transport)
    (claimed,) = await worker.fetch()
    first = await worker.finish(claimed, exit_code=3)
    again = await worker.finish(claimed, exit_code=3)
    assert first == again
    assert again.state == TaskState.FAILED
    info = await alice.get_task(task.uuid)
    assert [(a.attempt, a.state, a.exit_code) for a in info.attempts] == [(1, "failed", 3)]


async def test_unregister_requeues_held_tasks_and_ends_the_worker_token(alice, transport):
    """A worker that leaves gives its tasks back; its token no longer works (W5)."""
    task = await alice.submit_task(spec("x"))
    worker = await start_worker(alice, transport)
    await worker.fetch()
    await worker.client.unregister_worker(worker.uuid)
    info = await alice.get_task(task.uuid)
    assert (info.state, info.attempts[0].state, info.attempts[0].reason) == (
        "ready",
        "requeued",
        "worker_stopped",
    )
    await asyncio.sleep(1.1)  # the token check cache lives one second
    with pytest.raises(errors.Unauthorized):
        await worker.heartbeat()
    assert (await alice.get_worker(worker.uuid)).state == WorkerState.STOPPED


async def test_drain_resume_and_shutdown_orders_reach_the_worker(alice, transport):
    """Drain stops claims; resume restarts them; shutdown wakes a parked fetch (W4)."""
    await alice.submit_task(spec("x"))
    worker = await start_worker(alice, transport)
    drained = await alice.drain_worker(worker.uuid)
    assert drained.state == WorkerState.DRAINING
    reply = await worker.client.fetch_tasks(worker.uuid)
    assert (reply.tasks, reply.commands.drain) == ([], True)
    await alice.resume_worker(worker.uuid)
    assert len(await worker.fetch()) == 1
    parked = asyncio.create_task(worker.client.fetch_tasks(worker.uuid, wait=WAIT))
    await asyncio.sleep(0.3)
    stopping = await alice.shutdown_worker(worker.uuid)
    assert (stopping.state, stopping.shutdown) == (WorkerState.DRAINING, ShutdownMode.GRACEFUL)
    woken = await asyncio.wait_for(parked, WAIT)
    assert woken.commands.shutdown == ShutdownMode.GRACEFUL
    await alice.shutdown_workers([worker.uuid], force=True)
    assert (await worker.heartbeat()).shutdown == ShutdownMode.FORCE
    await alice.shutdown_workers([worker.uuid])  # a graceful order never softens a forced one
    assert (await worker.heartbeat()).shutdown == ShutdownMode.FORCE
    with pytest.raises(errors.Conflict):
        await alice.resume_worker(worker.uuid)


async def test_workers_are_queried_and_shown_with_their_facts(alice, make_user, transport):
    """Query by tags, labels, group and state; a worker shows grants and running tasks (W3)."""
    gpu = await start_worker(alice, transport, tags=["gpu"], labels=["rack1"], slots=4)
    await start_worker(alice, transport, tags=["cpu"], groups={"lab": Role.WRITE})
    task = await alice.submit_task(spec("x"))
    await gpu.fetch()
    page = await alice.query_workers(WorkerQuery(tags=["gpu"]))
    assert ([str(w.uuid) for w in page.workers], page.total) == ([gpu.uuid], 1)
    assert (await alice.query_workers(WorkerQuery(labels=["rack1"]))).total == 1
    assert (await alice.query_workers(WorkerQuery(group="lab"))).total == 1
    assert (await alice.query_workers()).total == 2
    shown = await alice.get_worker(gpu.uuid)
    assert (shown.slots, shown.running, shown.creator) == (4, [task.uuid], "alice")
    assert [(g.group, g.role) for g in shown.grants] == [("alice", "admin")]
    stranger = await make_user("stranger")
    assert (await stranger.query_workers()).total == 0
    with pytest.raises(errors.NotFound):
        await stranger.get_worker(gpu.uuid)
    assert (await alice.get_group("lab")).worker_count == 1


async def test_a_worker_page_says_when_silence_makes_a_worker_lost(app, alice, transport):
    """The page carries the coordinator's heartbeat timeout, so clients can warn before it."""
    await start_worker(alice, transport)
    timeout = app.state.coordinator.settings.heartbeat_timeout
    assert (await alice.query_workers()).heartbeat_timeout == timeout == 120.0


async def test_heartbeat_renews_a_worker_token_past_half_its_life(app, alice, transport):
    """W2: a heartbeat with a token near its end gets a fresh one, which works."""
    worker = await start_worker(alice, transport)
    coordinator = app.state.coordinator
    async with coordinator.sessions.begin() as db:
        user = await db.scalar(select(User).where(User.name == "alice"))
        short, _ = await coordinator.authenticator.open_session(
            db, user, None, worker_id=worker.uuid, lifetime=60
        )
    client = AsyncClient("http://mitosis.test", short, transport=transport)
    commands = await client.heartbeat(worker.uuid)
    assert commands.token is not None
    assert client.token == commands.token
    assert (await client.heartbeat(worker.uuid)).token is None
    await client.aclose()


async def test_the_background_monitor_requeues_by_itself(settings, alice):
    """The monitor started with the app sweeps on its own (short timeouts, real time)."""
    quick = msgspec.structs.replace(settings, heartbeat_timeout=0.5, liveness_interval=0.1)
    application = create_app(quick)
    async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
        transport = httpx.ASGITransport(app=application)
        user = AsyncClient("http://replica.test", transport=transport)
        await user.login("alice", "pw")
        task = await user.submit_task(spec("x"))
        worker = await start_worker(user, transport)
        await worker.fetch()
        for _ in range(50):
            if (await user.get_task(task.uuid)).state == TaskState.READY:
                break
            await asyncio.sleep(0.1)
        assert (await user.get_task(task.uuid)).attempts[0].reason == "worker_lost"
        await user.aclose()
        await worker.client.aclose()


async def test_a_parked_fetch_with_nothing_to_take_writes_nothing(app, alice, transport):
    """Rechecks of a parked fetch only read: the worker's row is written once, by the first
    look, however long the fetch parks (an idle fleet costs the database no commits)."""
    worker = await start_worker(alice, transport)
    parked = asyncio.create_task(worker.fetch(wait=6.0))  # ends well after the second read
    await asyncio.sleep(0.5)
    first = (await alice.get_worker(worker.uuid)).last_heartbeat
    await asyncio.sleep(2.0)  # two rechecks
    assert (await alice.get_worker(worker.uuid)).last_heartbeat == first
    assert await parked == []
