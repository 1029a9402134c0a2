"""The worker daemon: register, heartbeat, long-poll for tasks, run them, report, leave.

It runs one TaskGroup of named loops, each small and free of HTTP details:

* ``heartbeat`` tells the coordinator every ``heartbeat_interval`` what runs here and applies
  the orders in the reply: kill these attempts, drain, shut down, here is a renewed token;
* ``fetch`` long-polls for as many tasks as there are free slots (the coordinator parks the
  request until a task matches) and starts an attempt for each; every fetch also carries
  the results and phases waiting in the outbox, so a busy worker reports one task and takes
  the next in one round trip. While tasks are short it also takes some ahead of its slots,
  queued until a slot frees and handed back if none does soon (see ``slots``);
* ``reports`` sends what no fetch carried within a moment (the fetch is parked, or every
  slot is busy), retried until the coordinator takes it (see ``reports``).

Stopping is an Event, set by SIGTERM/SIGINT, by ``lifetime`` or by a shutdown order: fetching
stops at once, running attempts get ``shutdown_grace`` to finish and are then killed and
reported ``worker_stopped`` (the coordinator requeues them); a second SIGINT kills at once.
Network errors never end the daemon: every loop backs off with jitter and tries again, so a
coordinator restart costs at most a few seconds and no result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mitosis_sdk import errors
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas.tasks import TaskReason
from mitosis_sdk.schemas.workers import (
    Assignment,
    AttemptRef,
    FetchReply,
    PhaseEntry,
    ReportOutcome,
    ResultEntry,
    ResultReport,
    ShutdownMode,
    WorkerCommands,
)
from mitosis_sdk.waiting import wait_event
from mitosis_worker import manager
from mitosis_worker.backoff import Backoff
from mitosis_worker.config import WorkerSettings
from mitosis_worker.executor import Attempt
from mitosis_worker.host import registration
from mitosis_worker.logship import RedisLogWriter, log_shipper
from mitosis_worker.outputs import AttemptLink
from mitosis_worker.reports import Batch, Outbox
from mitosis_worker.runner import RunnerConfig, attempt_for, run_assignment, unstarted
from mitosis_worker.slots import SHORT_RUN, Slots, ahead_for
from mitosis_worker.trees import Trees

log = logging.getLogger(__name__)

# A fetch waits up to GATHER seconds for a result per slot, while tasks are short (under
# SHORT_RUN), so the wait costs a slot at most half of such a task's time and nothing for
# longer ones: see WorkerDaemon._gather.
GATHER = 0.010


@dataclass
class Running:
    """An attempt the worker holds: started (``task``), or queued for a slot."""

    assignment: Assignment
    attempt: Attempt
    task: asyncio.Task | None = None
    began: float | None = None  # monotonic time it started
    stopped_by_worker: bool = False


@dataclass
class WorkerDaemon:
    settings: WorkerSettings
    client: AsyncClient
    worker_id: uuid.UUID | None = None
    # Every attempt the coordinator has given it and not yet had the result of from it.
    held: dict[tuple[uuid.UUID, int], Running] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    draining: bool = False
    exit_code: int = 0
    # Where live logs go straight into Redis, when the coordinator handed out a user.
    log_redis: RedisLogWriter | None = None

    def __post_init__(self) -> None:
        self.outbox = Outbox(self._send_reports)
        work_dir = Path(self.settings.work_dir)
        # Spares for all a fetch can bring: the slots and the tasks held ahead of them.
        slots = self.settings.slots
        self.trees = Trees(work_dir, ahead=slots + ahead_for(slots))
        self.runner = RunnerConfig(work_dir=work_dir, grace=self.settings.grace, trees=self.trees)
        self.slots: Slots[Running] = Slots(self.settings.slots, self._launch, self._hand_back)
        self._tasks: asyncio.TaskGroup | None = None
        self._slot_freed = asyncio.Event()
        self._last_run = float("inf")  # seconds the latest attempt took
        # False once the coordinator refused ``ahead`` (a version before it): free slots only.
        self._holds_ahead = True
        self._kill_now = False
        self._exit_when_idle = False

    # ---- life -------------------------------------------------------------------------

    async def run(self) -> int:
        """Register, serve until stopped, drain, unregister; the process exit status."""
        registered = await self.client.register_worker(**registration(self.settings))
        self.worker_id = registered.worker.uuid
        self.client.token = registered.token
        if registered.log_redis is not None:  # live logs straight into Redis (X5)
            self.log_redis = RedisLogWriter(registered.log_redis)
        log.info("worker.registered uuid=%s slots=%s", self.worker_id, self.settings.slots)
        self.trees.start()
        self._write_status("online")
        started = time.monotonic()
        try:
            await self._serve(started)
        finally:
            self.trees.close()
        await self._unregister()
        if self.log_redis is not None:
            await self.log_redis.aclose()
        return self.exit_code

    async def _serve(self, started: float) -> None:
        async with asyncio.TaskGroup() as group:
            self._tasks = group
            group.create_task(self._heartbeat_loop(), name="heartbeat")
            group.create_task(self.outbox.run(), name="reports")
            group.create_task(self._fetch_loop(), name="fetch")
            if self.settings.lifetime:
                group.create_task(self._expire(started), name="lifetime")
            await self.stop.wait()
            await self._finish_running()
            self.slots.close()
            self.outbox.close()

    async def _send_reports(
        self, results: list[ResultEntry], phases: list[PhaseEntry]
    ) -> list[ReportOutcome]:
        """Reports no fetch carried: a fetch of their own that claims nothing."""
        reply = await self.client.fetch_tasks(
            self.worker_id, max_tasks=0, results=results, phases=phases
        )
        self.apply(reply.commands)
        return reply.reports

    def request_stop(self, *, immediately: bool = False) -> None:
        """Graceful stop (SIGTERM, first SIGINT); ``immediately`` kills running tasks now."""
        if self.stop.is_set() or immediately:
            self._kill_now = True
            for running in self.held.values():
                running.stopped_by_worker = True
                running.attempt.cancel()
        self.stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)

    async def _expire(self, started: float) -> None:
        remaining = self.settings.lifetime - (time.monotonic() - started)
        if not await wait_event(self.stop, remaining):
            log.info("worker.lifetime_reached")
            self.request_stop()

    async def _finish_running(self) -> None:
        """Hand back what never started; give running attempts ``shutdown_grace``, then
        kill them (they are requeued)."""
        self.slots.hand_back_all("the worker is stopping")
        tasks = [r.task for r in self.held.values() if r.task is not None]
        if not tasks:
            return
        log.info("worker.draining running=%d grace=%ss", len(tasks), self.settings.shutdown_grace)
        self._write_status("stopping")
        if not self._kill_now:
            await asyncio.wait(tasks, timeout=self.settings.shutdown_grace)
        for running in list(self.held.values()):
            running.stopped_by_worker = True
            running.attempt.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _unregister(self) -> None:
        """Best effort: a coordinator that cannot be reached finds the worker lost later."""
        try:
            await asyncio.wait_for(self.client.unregister_worker(self.worker_id), timeout=10)
        except (errors.MitosisError, TimeoutError) as exc:
            log.warning("worker.unregister_failed: %s", exc or "no answer in 10 s")
        self._write_status("stopped")
        log.info("worker.stopped uuid=%s", self.worker_id)

    # ---- loops ------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        backoff = Backoff(initial=1.0, maximum=self.settings.heartbeat_interval)
        while not self.stop.is_set():
            delay = self.settings.heartbeat_interval
            try:
                refs = [AttemptRef(task=t, attempt=a) for (t, a) in self.held]
                commands = await self.client.heartbeat(self.worker_id, refs)
                self.apply(commands)
                backoff.reset()
            except errors.Unauthorized as exc:
                log.error("worker.token_refused: %s; stopping", exc.message)
                self.exit_code = 3
                self.request_stop()
            except errors.MitosisError as exc:
                delay = backoff.delay()
                log.warning("heartbeat.failed retry_in=%.1fs: %s", delay, exc)
            await wait_event(self.stop, delay)

    async def _fetch_loop(self) -> None:
        backoff = Backoff(initial=0.5, maximum=30.0)
        while not self.stop.is_set():
            short = self._short()
            ahead = ahead_for(self.settings.slots) if self._holds_ahead and short else 0
            free = self.settings.slots + ahead - len(self.held)
            if self.draining or free <= 0:
                await self._wait_for_slot(self.settings.heartbeat_interval)
                continue
            if self.slots.busy and short:
                await self._gather()
                free = self.settings.slots + ahead - len(self.held)
            batch = self.outbox.take()
            try:
                reply = await self._poll(free, ahead, batch)
            except errors.Unauthorized as exc:
                self.outbox.restore(batch)
                log.error("worker.token_refused: %s; stopping", exc.message)
                self.exit_code = 3
                self.request_stop()
                return
            except errors.MitosisError as exc:
                self.outbox.restore(batch)
                if ahead and isinstance(exc, errors.BadRequest):  # an older coordinator
                    self._holds_ahead = False
                delay = backoff.delay()
                log.warning("fetch.failed retry_in=%.1fs: %s", delay, exc)
                await wait_event(self.stop, delay)
                continue
            if reply is None:  # stopping: the reports go out with the outbox
                self.outbox.restore(batch)
                return
            backoff.reset()
            for assignment in reply.tasks:  # first: their spawns go before the settled
                key = (assignment.task, assignment.attempt)  # attempts' clean-ups
                if key not in self.held and not self.outbox.holds(key):
                    self._start(assignment)
            self.outbox.settle(batch, reply.reports)
            self.apply(reply.commands)

    async def _poll(self, free: int, ahead: int, batch: Batch) -> FetchReply | None:
        """One fetch carrying ``batch``; None when the worker began stopping while it was
        parked (it is abandoned: the coordinator requeues what it might have claimed when the
        worker unregisters)."""
        known = [AttemptRef(task=t, attempt=a) for t, a in self.held]
        fetch = asyncio.ensure_future(
            self.client.fetch_tasks(
                self.worker_id,
                wait=self.settings.poll_wait,
                max_tasks=free,
                ahead=ahead,
                results=batch.results,
                phases=batch.phases,
                known=known + self.outbox.known(),
            )
        )
        # The request goes out first; the trees' orders are written while it is out.
        asyncio.get_running_loop().call_soon(self.trees.tidy)
        if batch:  # a fetch that carries reports answers at once: see it through
            return await fetch
        stopping = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not fetch.done():
            fetch.cancel()
            await asyncio.wait({fetch})  # let it unwind; whatever it ends with is dropped
            if not fetch.cancelled():
                fetch.exception()
            return None
        return fetch.result()

    def _short(self) -> bool:
        """Are the tasks short: the latest took less than ``SHORT_RUN``, and none running
        has taken longer?"""
        if self._last_run >= SHORT_RUN:
            return False
        since = time.monotonic() - SHORT_RUN
        return all(r.began is None or r.began > since for r in self.held.values())

    async def _gather(self) -> None:
        """Short tasks: give the running ones ``GATHER`` seconds to end too, until there is
        a result per slot, so one fetch reports several and claims as many (two slots of
        ``true``: half the round trips, and twice the tasks per trip). A long task never
        waits on this: the rule applies only while tasks are short (``_short``)."""
        deadline = time.monotonic() + GATHER
        while (
            self.slots.busy
            and self.outbox.results_ready() < self.settings.slots
            and not self.stop.is_set()
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await self._wait_for_slot(remaining)

    async def _wait_for_slot(self, seconds: float) -> None:
        self._slot_freed.clear()
        waits = [
            asyncio.ensure_future(self._slot_freed.wait()),
            asyncio.ensure_future(self.stop.wait()),
        ]
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()

    # ---- attempts ---------------------------------------------------------------------

    def _start(self, assignment: Assignment) -> None:
        """Hold a claimed attempt: it starts in a free slot, or queues for one."""
        key = (assignment.task, assignment.attempt)
        sink = log_shipper(
            self.client, self.worker_id, assignment.task, assignment.attempt, self.log_redis
        )
        attempt = attempt_for(assignment, self.runner, self.outbox, log_sink=sink)
        running = Running(assignment, attempt)
        self.held[key] = running
        self.slots.admit(running)

    def _launch(self, running: Running) -> None:
        """The attempt got a slot: run it."""
        name = f"task-{running.assignment.task}"
        running.task = self._tasks.create_task(self._run(running), name=name)

    def _hand_back(self, running: Running, why: str) -> None:
        message = f"handed back unstarted: {why}"
        report = unstarted(running.assignment.attempt, TaskReason.WORKER_STOPPED, message)
        self._settle_unstarted(running, report)

    def _settle_unstarted(self, running: Running, report: ResultReport) -> None:
        """A queued attempt leaves without having started: its report is all there is."""
        assignment = running.assignment
        self.held.pop((assignment.task, assignment.attempt), None)
        self._slot_freed.set()
        self._tasks.create_task(
            self._deliver_unstarted(assignment, report), name=f"unstarted-{assignment.task}"
        )

    async def _deliver_unstarted(self, assignment: Assignment, report: ResultReport) -> None:
        await self.outbox.deliver(assignment.task, report)
        self._stop_if_idle()

    async def _run(self, running: Running) -> None:
        assignment = running.assignment
        key = (assignment.task, assignment.attempt)
        report = None
        began = running.began = time.monotonic()
        try:
            self._write_status("online")
            link = AttemptLink(self.client, self.worker_id, assignment.task, assignment.attempt)
            report = await run_assignment(
                assignment,
                running.attempt,
                self.outbox,
                link,
                stopped_by_worker=lambda: running.stopped_by_worker,
            )
        except Exception:
            # The daemon must outlive any one task; the coordinator's liveness check
            # requeues an attempt whose result never arrives.
            log.exception("attempt.crashed task=%s attempt=%s", *key)
        finally:
            # The slot is free once the process is gone: the next fetch carries the result.
            self.held.pop(key, None)
            self.slots.release()
            self._last_run = time.monotonic() - began
            self._slot_freed.set()
            self._write_status("draining" if self.draining else "online")
        try:
            if report is not None:
                await self.outbox.deliver(assignment.task, report)
        finally:
            # Once the result is in (the reply that acknowledged it started the next task
            # first); a rename, the trees' keeper removes it.
            running.attempt.cleanup()
        self._stop_if_idle()

    def apply(self, commands: WorkerCommands) -> None:
        """Carry out the coordinator's orders from a heartbeat or fetch reply."""
        if commands.token:
            self.client.token = commands.token
        for ref in commands.cancel:
            running = self.held.get((ref.task, ref.attempt))
            if running is None:
                continue
            log.info("attempt.cancel task=%s attempt=%s", ref.task, ref.attempt)
            if self.slots.withdraw(running):  # queued: it never started
                report = unstarted(ref.attempt, TaskReason.CANCELLED, "cancelled before start")
                self._settle_unstarted(running, report)
            else:
                running.attempt.cancel()
        if commands.drain != self.draining:
            self.draining = commands.drain
            log.info("worker.%s", "draining" if self.draining else "resumed")
            if self.draining:
                self.slots.hand_back_all("the worker is draining")
            self._slot_freed.set()
        if commands.shutdown == ShutdownMode.FORCE:
            log.info("worker.shutdown mode=force")
            self.request_stop(immediately=True)
        elif commands.shutdown == ShutdownMode.GRACEFUL and not self._exit_when_idle:
            log.info("worker.shutdown mode=graceful (drain, then exit)")
            self.draining = self._exit_when_idle = True
            self.slots.hand_back_all("the worker is shutting down")
            self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        if self._exit_when_idle and not self.held:
            self.stop.set()

    def _write_status(self, state: str) -> None:
        if not self.settings.status_file:
            return
        tasks = [
            (str(r.assignment.task), r.assignment.attempt, r.attempt.pid)
            for r in self.held.values()
            if r.attempt.pid is not None
        ]
        with contextlib.suppress(OSError):
            manager.write_status(
                Path(self.settings.status_file),
                worker_uuid=str(self.worker_id) if self.worker_id else None,
                state=state,
                tasks=tasks,
                keeper_pid=self.trees.keeper_pid,
            )
