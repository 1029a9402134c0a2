"""Delivering what happened to the coordinator, through network blips and restarts.

Results and phases wait in one :class:`Outbox` for the daemon's next fetch, which carries
them: a busy worker spends one round trip per task (report the last, take the next), and a
phase costs no request of its own. When no fetch takes them within ``RIDE`` seconds -- the
fetch is parked waiting for work, or every slot is busy -- :meth:`Outbox.run` sends them in
a fetch of their own that claims nothing.

Phase reports are hints for people watching: they are coalesced over ``RIDE`` (only the
newest phase of an attempt is kept, none once its result is queued, so a task that ends
within that time reports its result alone, the result naming the last phase reached), and
a refused one is dropped. Results are the truth: each stays in the outbox until the
coordinator records it, or refuses it for good (409: a newer attempt superseded this one;
404: the task is gone). A request that fails puts its reports back, to be sent again; the
coordinator answers a result it already recorded like the first time, so a worker that
lost the coordinator re-reports everything once it is back, and each result counts once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mitosis_sdk import errors
from mitosis_sdk.schemas.tasks import TaskPhase
from mitosis_sdk.schemas.workers import (
    AttemptRef,
    PhaseEntry,
    PhaseReport,
    ReportAck,
    ReportOutcome,
    ResultEntry,
    ResultReport,
)
from mitosis_sdk.waiting import wait_event
from mitosis_worker.backoff import Backoff

log = logging.getLogger(__name__)

RIDE = 0.05  # how long a report waits for a fetch to carry it
Key = tuple[uuid.UUID, int]
Send = Callable[[list[ResultEntry], list[PhaseEntry]], Awaitable[list[ReportOutcome]]]

# Refusals of a whole request that retrying cannot change (the worker is gone, ...).
FINAL_REFUSALS = (errors.Conflict, errors.NotFound, errors.Forbidden, errors.BadRequest)


@dataclass
class Batch:
    """Reports taken out of the outbox for one request."""

    results: list[ResultEntry] = field(default_factory=list)
    phases: list[PhaseEntry] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.results or self.phases)


@dataclass
class _Result:
    entry: ResultEntry
    delivered: asyncio.Future[ReportAck | None]
    since: float
    sending: bool = False


class Outbox:
    def __init__(self, send: Send, ride: float = RIDE, clock=time.monotonic) -> None:
        self._send = send
        self._ride = ride
        self._clock = clock
        self._results: dict[Key, _Result] = {}
        self._phases: dict[Key, tuple[PhaseEntry, float]] = {}
        self._changed = asyncio.Event()
        # When the sender looks next on its own (None: only when poked). A report queued
        # while it sleeps towards a deadline cannot ripen sooner, so it need not wake it:
        # four phases and a result per task would cost four wake-ups and timers.
        self._next_look: float | None = None
        self._closed = False

    # ---- what attempts put in --------------------------------------------------------

    def phase(self, task: uuid.UUID, attempt: int, phase: TaskPhase) -> None:
        """Queue a phase (never blocks); a newer phase of the attempt replaces an older one."""
        if (task, attempt) in self._results:
            return
        entry = PhaseEntry(task=task, report=PhaseReport(attempt=attempt, phase=phase))
        self._phases[(task, attempt)] = (entry, self._clock())
        self._poke()

    async def deliver(self, task: uuid.UUID, report: ResultReport) -> ReportAck | None:
        """Queue a result and wait until the coordinator took it (its ack) or refused it
        for good (None)."""
        key = (task, report.attempt)
        self._phases.pop(key, None)
        delivered = asyncio.get_running_loop().create_future()
        entry = ResultEntry(task=task, report=report)
        self._results[key] = _Result(entry, delivered, self._clock())
        self._poke()
        return await delivered

    # ---- what requests take out ------------------------------------------------------

    def take(self, everything: bool = False) -> Batch:
        """The reports for one request: every result not already on its way, and the phases
        that waited ``RIDE`` (a task that ends sooner reports its result, no phase), or all
        of them when ``everything``."""
        ripe = self._clock() - self._ride
        batch = Batch()
        for key, (entry, since) in list(self._phases.items()):
            if everything or since <= ripe:
                batch.phases.append(entry)
                del self._phases[key]
        for pending in self._results.values():
            if not pending.sending:
                pending.sending = True
                batch.results.append(pending.entry)
        return batch

    def settle(self, batch: Batch, outcomes: list[ReportOutcome]) -> None:
        """The request carrying ``batch`` was answered: settle each report by its outcome
        (phases first, then results, as sent)."""
        for entry, outcome in zip(batch.phases, outcomes, strict=False):
            if outcome.refused is not None:
                log.debug("phase.refused task=%s: %s", entry.task, outcome.refused.message)
        answered = outcomes[len(batch.phases) :]
        self.restore(Batch(results=batch.results[len(answered) :]))  # none, from this server
        for entry, outcome in zip(batch.results, answered, strict=False):
            if outcome.refused is not None:
                log.warning(
                    "result.refused task=%s attempt=%s: %s",
                    entry.task,
                    entry.report.attempt,
                    outcome.refused.message,
                )
            self._resolve(entry, outcome.ack)

    def refuse(self, batch: Batch, exc: errors.MitosisError) -> None:
        """The coordinator refused the whole request for good: its results cannot land."""
        for entry in batch.results:
            log.warning("result.refused task=%s: %s", entry.task, exc)
            self._resolve(entry, None)

    def restore(self, batch: Batch) -> None:
        """The request failed: its reports go back, to be sent again."""
        for entry in batch.results:
            pending = self._results.get((entry.task, entry.report.attempt))
            if pending is not None:
                pending.sending = False
        for entry in batch.phases:
            key = (entry.task, entry.report.attempt)
            if key not in self._phases and key not in self._results:
                self._phases[key] = (entry, self._clock())
        if batch:
            self._changed.set()

    def _resolve(self, entry: ResultEntry, ack: ReportAck | None) -> None:
        pending = self._results.pop((entry.task, entry.report.attempt), None)
        if pending is not None and not pending.delivered.done():
            pending.delivered.set_result(ack)
        # A closed outbox's sender may be waiting for this last result: let it see it is done.
        if self._closed:
            self._changed.set()

    def results_ready(self) -> int:
        """Results waiting for a request to take them."""
        return sum(not pending.sending for pending in self._results.values())

    def known(self) -> list[AttemptRef]:
        """Attempts whose result is not yet acknowledged (the coordinator still holds them
        for this worker, and must not deliver them again)."""
        return [AttemptRef(task=t, attempt=a) for t, a in self._results]

    def holds(self, key: Key) -> bool:
        return key in self._results

    # ---- sending what no fetch took --------------------------------------------------

    def _poke(self) -> None:
        if self._next_look is None:
            self._changed.set()

    def close(self) -> None:
        """No more reports will come: :meth:`run` ends once everything is delivered."""
        self._closed = True
        self._changed.set()

    def _oldest(self) -> float | None:
        times = [since for _, since in self._phases.values()]
        times += [r.since for r in self._results.values() if not r.sending]
        return min(times, default=None)

    async def run(self) -> None:
        """Send reports that waited ``RIDE`` seconds for a fetch, until closed and empty."""
        backoff = Backoff(initial=0.2, maximum=30.0)
        while not (self._closed and not self._results and not self._phases):
            oldest = self._oldest()
            if oldest is None:
                self._next_look = None
                self._changed.clear()
                await self._changed.wait()
                continue
            wait = 0.0 if self._closed else oldest + self._ride - self._clock()
            if wait > 0:
                self._next_look = oldest + self._ride
                self._changed.clear()
                await wait_event(self._changed, wait)
                continue
            batch = self.take(everything=self._closed)
            if not batch:  # only results already on their way: wait for their answer
                self._changed.clear()
                await wait_event(self._changed, self._ride)
                continue
            try:
                outcomes = await self._send(batch.results, batch.phases)
            except FINAL_REFUSALS as exc:
                self.refuse(batch, exc)
            except errors.MitosisError as exc:
                self.restore(batch)
                delay = backoff.delay()
                log.warning("reports.retry in=%.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
            else:
                backoff.reset()
                self.settle(batch, outcomes)
