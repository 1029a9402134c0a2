"""A fetch that carries reports (issue 6): results and phases recorded with the claim, in one
round trip, with fencing exact (T8) and retries safe, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from mitosis_sdk.errors import ErrorCode
from mitosis_sdk.schemas import (
    Assignment,
    AttemptRef,
    Dependency,
    PhaseEntry,
    PhaseReport,
    ResultEntry,
    ResultReport,
    TaskPhase,
    TaskReason,
    TaskState,
)
from mitosis_server.db.models import TaskAttempt
from tests.integration.server.fleet import silence, spec, start_worker

WAIT = 10.0


@pytest.fixture
async def alice(make_user):
    return await make_user("alice")


def done(task: Assignment, exit_code: int = 0) -> ResultEntry:
    return ResultEntry(
        task=task.task, report=ResultReport(attempt=task.attempt, exit_code=exit_code)
    )


async def test_a_fetch_reports_the_last_task_and_takes_the_next(alice, transport):
    """One request: the result frees the worker's only slot, and the claim uses it."""
    first, second = (await alice.submit_tasks([spec("a"), spec("b")])).results
    worker = await start_worker(alice, transport)
    (a,) = await worker.fetch()
    reply = await worker.client.fetch_tasks(worker.uuid, wait=WAIT, results=[done(a)])
    assert [t.task for t in reply.tasks] == [second.task.uuid]
    (outcome,) = reply.reports
    assert (outcome.task, outcome.attempt, outcome.ack.state) == (a.task, 1, TaskState.COMPLETED)
    assert (await alice.get_task(first.task.uuid)).state == "completed"


async def test_reports_are_refused_one_by_one(app, alice, transport):
    """A superseded attempt's result is refused (409) in its outcome; the fetch's other
    reports are recorded all the same."""
    stale, fresh = (await alice.submit_tasks([spec("stale"), spec("fresh")])).results
    zombie = await start_worker(alice, transport)
    (old,) = await zombie.fetch()
    await silence(app, zombie, 3600)
    await app.state.coordinator.liveness.sweep()  # the zombie's attempt is lost, requeued
    holder = await start_worker(alice, transport, slots=2)
    taken = {t.task: t for t in await holder.fetch(max_tasks=2)}
    assert set(taken) == {stale.task.uuid, fresh.task.uuid}
    refused = await zombie.client.fetch_tasks(zombie.uuid, max_tasks=0, results=[done(old)])
    assert refused.reports[0].refused.error == ErrorCode.CONFLICT
    assert "superseded" in refused.reports[0].refused.message
    unknown = ResultEntry(task=uuid.uuid4(), report=ResultReport(attempt=1, exit_code=0))
    phase = PhaseEntry(task=fresh.task.uuid, report=PhaseReport(attempt=1, phase=TaskPhase.SPAWNED))
    results = [done(taken[stale.task.uuid], 2), unknown, done(taken[fresh.task.uuid])]
    reply = await holder.client.fetch_tasks(holder.uuid, wait=WAIT, phases=[phase], results=results)
    states = [o.ack.state if o.ack else o.refused.error for o in reply.reports]
    assert states == [
        TaskState.RUNNING,
        TaskState.FAILED,
        ErrorCode.NOT_FOUND,
        TaskState.COMPLETED,
    ]
    assert (await alice.get_task(stale.task.uuid)).exit_code == 2


async def test_a_fetch_with_reports_answers_at_once(alice, transport):
    """With nothing to claim, a fetch that carried reports does not park: the worker gets
    the outcomes now."""
    task = await alice.submit_task(spec("x"))
    worker = await start_worker(alice, transport)
    (claimed,) = await worker.fetch()
    phase = PhaseEntry(task=task.uuid, report=PhaseReport(attempt=1, phase=TaskPhase.SPAWNED))
    reply = await asyncio.wait_for(
        worker.client.fetch_tasks(worker.uuid, wait=WAIT, phases=[phase]), WAIT / 2
    )
    assert (reply.tasks, reply.reports[0].ack.state) == ([], TaskState.RUNNING)
    assert (await alice.get_task(task.uuid)).phase == "spawned"
    reply = await worker.client.fetch_tasks(worker.uuid, wait=WAIT, results=[done(claimed)])
    assert reply.reports[0].ack.state == TaskState.COMPLETED


async def test_a_retried_fetch_changes_nothing_twice(app, alice, transport):
    """The same fetch sent again (its reply was lost): each result is answered like the first
    time, recorded once, and the task claimed by the lost reply is delivered again."""
    first, second = (await alice.submit_tasks([spec("a"), spec("b")])).results
    worker = await start_worker(alice, transport)
    (a,) = await worker.fetch()
    lost = await worker.client.fetch_tasks(worker.uuid, results=[done(a, 4)], known=[])
    retried = await worker.client.fetch_tasks(worker.uuid, results=[done(a, 4)], known=[])
    assert lost.reports == retried.reports
    assert retried.reports[0].ack.state == TaskState.FAILED
    assert [(t.task, t.attempt) for t in retried.tasks] == [(second.task.uuid, 1)]
    assert retried.tasks == lost.tasks
    known = [AttemptRef(task=second.task.uuid, attempt=1)]
    assert (await worker.client.fetch_tasks(worker.uuid, known=known)).tasks == []
    info = await alice.get_task(first.task.uuid)
    assert [(x.attempt, x.state, x.exit_code) for x in info.attempts] == [(1, "failed", 4)]


async def test_known_attempts_are_not_delivered_again(alice, transport):
    """Without ``known`` (or with every held attempt in it) nothing is delivered twice."""
    await alice.submit_task(spec("x"))
    worker = await start_worker(alice, transport)
    (claimed,) = await worker.fetch()
    assert (await worker.client.fetch_tasks(worker.uuid)).tasks == []
    mine = [AttemptRef(task=claimed.task, attempt=1)]
    assert (await worker.client.fetch_tasks(worker.uuid, known=mine)).tasks == []


async def test_retried_combined_fetches_racing_take_each_task_once(app, alice, transport):
    """Race: a worker sends every fetch twice at once (a retry racing the original). Every
    task is claimed once, every result recorded once, and the worker never holds more
    attempts than its slots."""
    slots, count = 4, 60
    await alice.submit_tasks([spec(str(i)) for i in range(count)])
    worker = await start_worker(alice, transport, slots=slots)
    claims: Counter = Counter()
    held: dict[tuple, Assignment] = {}
    most = 0
    for _ in range(4 * count):
        if len(claims) == count and not held:
            break
        results = [done(t) for t in held.values()]
        known = [AttemptRef(task=t, attempt=a) for t, a in held]
        replies = await asyncio.gather(
            *(
                worker.client.fetch_tasks(
                    worker.uuid, max_tasks=slots, results=results, known=known
                )
                for _ in range(2)
            )
        )
        for entry in results:
            held.pop((entry.task, entry.report.attempt), None)
        for reply in replies:
            assert all(o.ack is not None for o in reply.reports), reply.reports
            for task in reply.tasks:
                ref = (task.task, task.attempt)
                if ref not in held:
                    claims[task.task] += 1
                held[ref] = task
        most = max(most, len(held))
    assert most <= slots
    assert set(claims.values()) == {1}
    assert len(claims) == count
    async with app.state.coordinator.sessions() as db:
        attempts = await db.scalar(select(func.count()).select_from(TaskAttempt))
    assert attempts == count


async def test_results_of_one_fetch_each_end_their_own_way(alice, transport):
    """Five results in one fetch, recorded together (PostgreSQL) or one by one (SQLite),
    each as if it came alone: a completed task releases its dependent, a failure with a
    retry left goes back to the queue, a cancelled task stays cancelled with its exit code
    recorded, a ``worker_stopped`` kill is requeued, a plain failure fails."""
    upstream, retried, cancelled, stopped, failed = (
        await alice.submit_tasks(
            [spec("up"), spec("retry", retries=1), spec("cancel"), spec("stop"), spec("fail")]
        )
    ).results
    dependent = await alice.submit_task(
        spec("down", depends_on=[Dependency(task=upstream.task.uuid)])
    )
    worker = await start_worker(alice, transport, slots=5)
    taken = {t.task: t for t in await worker.fetch(max_tasks=5)}
    assert len(taken) == 5
    await alice.cancel_task(cancelled.task.uuid)

    def result(submitted, **report) -> ResultEntry:
        task = taken[submitted.task.uuid]
        return ResultEntry(task=task.task, report=ResultReport(attempt=task.attempt, **report))

    results = [
        result(upstream, exit_code=0),
        result(retried, exit_code=1),
        result(cancelled, exit_code=0),
        result(stopped, signal=15, reason=TaskReason.WORKER_STOPPED, message="stopping"),
        result(failed, exit_code=2),
    ]
    reply = await worker.client.fetch_tasks(worker.uuid, max_tasks=0, results=results)
    assert [o.ack.state for o in reply.reports] == [
        TaskState.COMPLETED,
        TaskState.READY,
        TaskState.CANCELLED,
        TaskState.READY,
        TaskState.FAILED,
    ]
    info = {s.task.uuid: await alice.get_task(s.task.uuid) for s in (cancelled, failed)}
    assert (info[cancelled.task.uuid].state, info[cancelled.task.uuid].exit_code) == (
        "cancelled",
        0,
    )
    assert (info[failed.task.uuid].reason, info[failed.task.uuid].exit_code) == (
        "nonzero_exit",
        2,
    )
    assert (await alice.get_task(dependent.uuid)).state == "ready"
    again = await worker.client.fetch_tasks(worker.uuid, max_tasks=0, results=results)
    assert [o.ack.state for o in again.reports] == [o.ack.state for o in reply.reports]
