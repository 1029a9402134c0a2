"""Wake-ups for parked fetches (FEATURES S4): "something a worker might take has changed".

A long-polling fetch creates a :class:`Waiter` *before* it looks in the database, so a
notification sent after that look cannot be lost: the waiter's flag stays set until the next
``wait``. Notifications are hints, never the source of truth: a parked fetch also re-checks
the database every ``RECHECK`` seconds, which keeps two coordinators correct without any
shared bus. Keys are group names (a task of that group became ready) and worker UUIDs (that
worker's tags, grants or state changed).

Without a bus this is in-process only (the embedded default). :meth:`Wakeups.attach` hooks it
to the coordinator's event bus: ``notify`` then also broadcasts the keys to the other
replicas, whose listeners ``deliver`` them, so a submit on coordinator A wakes a fetch parked
on B within milliseconds. The bus is also how services reach it to publish events
(services/publishing.py) without a new parameter on every service function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.waiting import wait_event

log = logging.getLogger(__name__)

RECHECK = 1.0
TOPIC = "wakeups"
# What wakes every parked fetch when this coordinator begins to shut down.
CLOSING = "closing"


def group_key(name: str) -> str:
    return f"group:{name}"


def worker_key(worker_uuid: Any) -> str:
    return f"worker:{worker_uuid}"


def _keys(groups: Iterable[str], workers: Iterable[Any]) -> set[str]:
    return {group_key(g) for g in groups} | {worker_key(w) for w in workers}


class Waiter:
    """One parked fetch's flag, registered under some keys."""

    def __init__(self, hub: Wakeups) -> None:
        self._hub = hub
        self._event = asyncio.Event()
        self._woken_by: set[str] = set()
        self.keys: set[str] = set()

    def watch(self, groups: Iterable[str] = (), workers: Iterable[Any] = ()) -> bool:
        """Also wake on these keys; True when any is new (the caller should re-check first)."""
        new = _keys(groups, workers) - self.keys
        for key in new:
            self._hub._waiters[key].add(self)
        self.keys |= new
        return bool(new)

    def wake(self, key: str) -> None:
        self._woken_by.add(key)
        self._event.set()

    async def wait(self, seconds: float) -> set[str]:
        """The keys that woke this waiter (now or since the last wait); empty after
        ``seconds`` without a wake-up; ``CLOSING`` at once once the coordinator is closing."""
        if self._hub.closing:
            return {CLOSING}
        await wait_event(self._event, seconds)
        woken, self._woken_by = self._woken_by, set()
        self._event.clear()
        return woken

    def close(self) -> None:
        for key in self.keys:
            waiters = self._hub._waiters.get(key)
            if waiters is not None:
                waiters.discard(self)
                if not waiters:
                    del self._hub._waiters[key]
        self.keys.clear()


class Wakeups:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[Waiter]] = defaultdict(set)
        self.bus: Any = None  # the EventBus once attached
        self._sending: set[asyncio.Task] = set()
        self.closing = False

    def attach(self, bus: Any) -> None:
        """Share wake-ups with the other coordinators through ``bus``."""
        self.bus = bus
        bus.listen(TOPIC, lambda message: self.deliver(message.split()))

    def spawn(self, coro: Any, name: str) -> None:
        """Run a send in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def drain(self, seconds: float = 2.0) -> None:
        """Let pending sends finish (bounded) before the bus closes."""
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=seconds)

    @contextlib.contextmanager
    def waiter(self, groups: Iterable[str] = (), workers: Iterable[Any] = ()) -> Iterator[Waiter]:
        waiter = Waiter(self)
        waiter.watch(groups, workers)
        try:
            yield waiter
        finally:
            waiter.close()

    def notify(self, groups: Iterable[str] = (), workers: Iterable[Any] = ()) -> None:
        """Wake every fetch parked on these groups or workers (here and, with a bus, on
        every other coordinator)."""
        keys = _keys(groups, workers)
        self.deliver(keys)
        if self.bus is not None and keys:
            try:
                self.spawn(self.bus.broadcast(TOPIC, " ".join(keys), here=False), "wakeup")
            except RuntimeError:  # no running loop (never in the server): local only
                log.debug("wakeups.no_loop")

    def release(self) -> None:
        """Shutdown has begun: answer every parked fetch now and park none from here on (a
        fetch parked for its 30 s would hold the graceful shutdown that long)."""
        self.closing = True
        for waiters in list(self._waiters.values()):
            for waiter in list(waiters):
                waiter.wake(CLOSING)

    def deliver(self, keys: Iterable[str]) -> None:
        for key in keys:
            for waiter in list(self._waiters.get(key, ())):
                waiter.wake(key)

    @property
    def parked(self) -> int:
        """How many distinct waiters are registered (for metrics and tests)."""
        return len({w for waiters in self._waiters.values() for w in waiters})


def notify_after_commit(
    db: AsyncSession,
    wakeups: Wakeups | None,
    groups: Iterable[str] = (),
    workers: Iterable[Any] = (),
) -> None:
    """Wake parked fetches once this request's transaction has committed (never before: a
    fetch woken early would look before the change is visible and park again)."""
    groups, workers = set(groups), set(workers)
    if wakeups is None or not (groups or workers):
        return

    async def _notify() -> None:
        wakeups.notify(groups, workers)

    db.info.setdefault("after_commit", []).append(_notify)
