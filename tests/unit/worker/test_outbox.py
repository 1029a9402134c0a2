"""The worker's outbox (``mitosis_worker.reports``): what a fetch carries, what goes on its
own, and results delivered exactly once through failures. The coordinator is a stand-in
here (outside the unit); the daemon tests run it against the real app."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from mitosis_sdk import errors
from mitosis_sdk.errors import ErrorBody, ErrorCode
from mitosis_sdk.schemas import (
    PhaseEntry,
    ReportAck,
    ReportOutcome,
    ResultEntry,
    ResultReport,
    TaskPhase,
    TaskState,
)
from mitosis_worker.reports import Outbox

pytestmark = pytest.mark.timeout(10)


class Coordinator:
    """Answers each report with an ack (or the refusal set for its task); can fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[ResultEntry], list[PhaseEntry]]] = []
        self.failures = 0
        self.refuse: set[uuid.UUID] = set()

    async def __call__(self, results, phases) -> list[ReportOutcome]:
        self.calls.append((results, phases))
        if self.failures:
            self.failures -= 1
            raise errors.ConnectionFailed("down")
        return [self._outcome(e.task, e.report.attempt) for e in [*phases, *results]]

    def _outcome(self, task, attempt) -> ReportOutcome:
        if task in self.refuse:
            body = ErrorBody(error=ErrorCode.CONFLICT, message="superseded")
            return ReportOutcome(task=task, attempt=attempt, refused=body)
        ack = ReportAck(state=TaskState.COMPLETED)
        return ReportOutcome(task=task, attempt=attempt, ack=ack)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ok(attempt: int = 1) -> ResultReport:
    return ResultReport(attempt=attempt, exit_code=0)


async def test_a_fetch_carries_results_at_once_and_phases_once_they_waited():
    """Results ride the next fetch right away; a phase only after the ride window, and not
    at all once its attempt's result is queued (a short task reports its result alone)."""
    clock = Clock()
    outbox = Outbox(Coordinator(), ride=0.05, clock=clock)
    short, long_ = uuid.uuid4(), uuid.uuid4()
    outbox.phase(short, 1, TaskPhase.SPAWNED)
    outbox.phase(long_, 1, TaskPhase.SPAWNED)
    delivered = asyncio.create_task(outbox.deliver(short, ok()))
    await asyncio.sleep(0)
    batch = outbox.take()
    assert [e.task for e in batch.results] == [short]
    assert batch.phases == []
    clock.now += 0.05
    outbox.phase(long_, 1, TaskPhase.EXITED)  # the newer phase replaces the older one
    clock.now += 0.05
    later = outbox.take()
    assert [(e.task, e.report.phase) for e in later.phases] == [(long_, TaskPhase.EXITED)]
    assert later.results == []  # the result is on its way already
    outbox.settle(batch, [ReportOutcome(task=short, attempt=1, ack=ReportAck(state="completed"))])
    assert (await delivered).state == TaskState.COMPLETED


async def test_what_no_fetch_takes_goes_on_its_own():
    """With no fetch leaving, the outbox sends its reports itself after the ride window."""
    coordinator = Coordinator()
    outbox = Outbox(coordinator, ride=0.02)
    runner = asyncio.create_task(outbox.run())
    ack = await outbox.deliver(uuid.uuid4(), ok())
    assert ack.state == TaskState.COMPLETED
    assert len(coordinator.calls) == 1
    outbox.close()
    await runner


async def test_a_failed_request_puts_its_reports_back_and_they_land_once():
    """A request that fails returns its batch: the next one carries it again, and the result
    resolves once, with the coordinator's answer."""
    coordinator = Coordinator()
    coordinator.failures = 2
    outbox = Outbox(coordinator, ride=0.01)
    runner = asyncio.create_task(outbox.run())
    task = uuid.uuid4()
    ack = await outbox.deliver(task, ok())
    assert ack.state == TaskState.COMPLETED
    assert [len(results) for results, _ in coordinator.calls] == [1, 1, 1]
    assert outbox.known() == []
    outbox.close()
    await runner


async def test_a_refused_result_is_dropped_for_good():
    """A result the coordinator refuses (a superseded attempt) resolves to None, unsent again."""
    coordinator = Coordinator()
    task = uuid.uuid4()
    coordinator.refuse.add(task)
    outbox = Outbox(coordinator, ride=0.01)
    runner = asyncio.create_task(outbox.run())
    assert await outbox.deliver(task, ok()) is None
    outbox.close()
    await runner
    assert len(coordinator.calls) == 1


async def test_unacknowledged_results_are_known_until_settled():
    """``known`` lists attempts whose result is queued or on its way (still held for the
    worker by the coordinator), so a fetch does not get them delivered again."""
    outbox = Outbox(Coordinator(), ride=10)
    task = uuid.uuid4()
    delivering = asyncio.create_task(outbox.deliver(task, ok(2)))
    await asyncio.sleep(0)
    assert [(r.task, r.attempt) for r in outbox.known()] == [(task, 2)]
    batch = outbox.take()
    assert outbox.holds((task, 2))
    outbox.restore(batch)
    again = outbox.take()
    assert [e.task for e in again.results] == [task]
    outbox.settle(again, [ReportOutcome(task=task, attempt=2, ack=ReportAck(state="failed"))])
    assert (await delivering).state == TaskState.FAILED
    assert outbox.known() == []


async def test_a_closed_outbox_ends_once_a_fetch_settles_its_last_result():
    """A result carried by a fetch (not by the outbox's own sender) and settled after the
    outbox was closed still lets :meth:`Outbox.run` end: a stopping worker never hangs."""
    outbox = Outbox(Coordinator(), ride=0.05)
    task = uuid.uuid4()
    sender = asyncio.create_task(outbox.run())
    delivered = asyncio.create_task(outbox.deliver(task, ok()))
    await asyncio.sleep(0)
    batch = outbox.take()  # a fetch takes it, and is still on its way when the stop comes
    outbox.close()
    await asyncio.sleep(0.1)
    assert not sender.done()
    ack = ReportAck(state=TaskState.CANCELLED)
    outbox.settle(batch, [ReportOutcome(task=task, attempt=1, ack=ack)])
    assert await asyncio.wait_for(delivered, 1) == ack
    await asyncio.wait_for(sender, 1)
