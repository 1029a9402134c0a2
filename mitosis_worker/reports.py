"""Delivering what happened to the coordinator, through network blips and restarts.

Phase reports are hints for people watching: only the newest phase of an attempt matters,
so they are coalesced and sent in the background, never delaying the task. Result reports
are the truth: each is retried with backoff until the coordinator takes it, or refuses it
for good (409: a newer attempt superseded this one; 404: the task is gone), so a worker
that lost the coordinator re-reports everything once it is back, and exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from mitosis_sdk import errors
from mitosis_sdk.schemas.tasks import TaskPhase
from mitosis_sdk.schemas.workers import PhaseReport, ReportAck, ResultReport
from mitosis_worker.backoff import Backoff

log = logging.getLogger(__name__)

SendPhase = Callable[[uuid.UUID, PhaseReport], Awaitable[None]]
SendResult = Callable[[uuid.UUID, ResultReport], Awaitable[ReportAck]]

# Refusals that retrying cannot change.
FINAL_REFUSALS = (errors.Conflict, errors.NotFound, errors.Forbidden, errors.BadRequest)


class Reporter:
    def __init__(self, send_phase: SendPhase, send_result: SendResult) -> None:
        self._send_phase = send_phase
        self._send_result = send_result
        self._phases: dict[tuple[uuid.UUID, int], PhaseReport] = {}
        self._wake = asyncio.Event()
        self.undelivered_results = 0

    def phase(self, task: uuid.UUID, attempt: int, phase: TaskPhase) -> None:
        """Queue a phase (never blocks); a newer phase of the attempt replaces an older one."""
        self._phases[(task, attempt)] = PhaseReport(attempt=attempt, phase=phase)
        self._wake.set()

    async def run_phases(self, stop: asyncio.Event) -> None:
        """Send queued phases until ``stop``; failed ones are dropped (the result follows)."""
        while not stop.is_set():
            waiting = asyncio.ensure_future(self._wake.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            stopping.cancel()
            self._wake.clear()
            batch, self._phases = self._phases, {}
            for (task, _), report in batch.items():
                try:
                    await self._send_phase(task, report)
                except errors.MitosisError as exc:
                    log.debug("phase.not_sent task=%s phase=%s: %s", task, report.phase, exc)

    async def result(self, task: uuid.UUID, report: ResultReport) -> ReportAck | None:
        """Deliver a result; None when the coordinator refused it for good."""
        self._phases.pop((task, report.attempt), None)
        backoff = Backoff(initial=0.2, maximum=30.0)
        self.undelivered_results += 1
        try:
            while True:
                try:
                    return await self._send_result(task, report)
                except FINAL_REFUSALS as exc:
                    log.warning(
                        "result.refused task=%s attempt=%s: %s", task, report.attempt, exc.message
                    )
                    return None
                except errors.MitosisError as exc:
                    delay = backoff.delay()
                    log.warning(
                        "result.retry task=%s attempt=%s in %.1fs: %s",
                        task,
                        report.attempt,
                        delay,
                        exc,
                    )
                    await asyncio.sleep(delay)
        finally:
            self.undelivered_results -= 1
